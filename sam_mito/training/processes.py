"""What training on one or many processes needs from the Trainer, kept in one place.

- Every trainable parameter takes part in the loss, so DDP runs without searching for unused
  parameters (``ddp_find_unused_parameters=False``, sam-mito's default): :func:`freeze_unreached`.
- Evaluation scores every row once, whatever the number of processes: loaders never drop
  evaluation rows (:func:`keep_last_batch`) and the loss is the mean of per-row losses
  (:func:`per_row_losses`), gathered without the rows distributed evaluation repeats.
- The card and ``training_config.json`` record the run as launched: :func:`run_record`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch
from transformers import TrainingArguments

logger = logging.getLogger(__name__)


def freeze_unreached(model: torch.nn.Module, loss_of_a_batch: Callable[[], torch.Tensor]) -> list[str]:
    """Freeze the trainable parameters that the loss's backward pass leaves without a gradient.

    SAM's decoder computes more than a loss may use (the IoU predictions, three extra masks); a
    parameter outside the loss's autograd graph gets no gradient, which DDP without the
    unused-parameter search does not allow. One backward pass on a probe batch finds them, so a
    loss that trains more freezes less. Gradients are cleared afterwards.

    Parameters
    ----------
    model : torch.nn.Module
        The model, with ``requires_grad`` already set (e.g. by
        :func:`sam_mito.models.loading.freeze_for_decoder_training`).
    loss_of_a_batch : callable
        Computes the training loss of one batch with ``model``.

    Returns
    -------
    list of str
        The names of the parameters frozen.
    """
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss_of_a_batch().backward()
    unreached = [name for name, p in trainable if p.grad is None]
    model.zero_grad(set_to_none=True)
    for name, p in trainable:
        if name in unreached:
            p.requires_grad = False
    if unreached:
        logger.info("frozen, the loss does not reach them: %s", ", ".join(whole_modules(model, unreached)))
    return unreached


def whole_modules(model: torch.nn.Module, names: list[str]) -> list[str]:
    """The largest modules all of whose parameters are in ``names``, plus any remaining names.

    Parameters
    ----------
    model : torch.nn.Module
        The model the names belong to.
    names : list of str
        Parameter names (``named_parameters``).

    Returns
    -------
    list of str
        E.g. ``["mask_decoder.iou_prediction_head"]`` for all of that head's weights and biases.
    """
    wanted, found = set(names), []
    for prefix, module in model.named_modules():
        own = {f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters()}
        if prefix and own and own <= wanted and not any(prefix.startswith(f"{m}.") for m in found):
            found.append(prefix)
    covered = {n for n in wanted if any(n.startswith(f"{m}.") for m in found)}
    return found + sorted(wanted - covered)


@contextlib.contextmanager
def keep_last_batch(args: TrainingArguments) -> Iterator[None]:
    """Within the block, ``args.dataloader_drop_last`` is False: it may drop training rows only."""
    drop_last = args.dataloader_drop_last
    args.dataloader_drop_last = False
    try:
        yield
    finally:
        args.dataloader_drop_last = drop_last


def per_row_losses(
    compute_loss: Callable, model: torch.nn.Module, inputs: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of each row of a batch on its own, and the outputs of the whole batch.

    Parameters
    ----------
    compute_loss : callable
        ``Trainer.compute_loss``-like: ``(model, inputs, return_outputs=True) -> (loss, outputs)``.
    model : torch.nn.Module
        The model to run.
    inputs : dict of str to torch.Tensor
        A collated batch; tensors whose first axis is the batch are split by row.

    Returns
    -------
    losses : torch.Tensor
        ``(B,)`` one loss per row, so that a mean over rows does not depend on how they were batched.
    outputs : dict of str to torch.Tensor
        The rows' tensor outputs (those with a batch axis) concatenated along it.
    """
    rows = len(inputs["targets"])
    losses, outputs = [], []
    for row in range(rows):
        one = {
            k: v[row : row + 1] if torch.is_tensor(v) and v.dim() and len(v) == rows else v
            for k, v in inputs.items()
        }
        loss, output = compute_loss(model, one, return_outputs=True)
        losses.append(loss.detach().reshape(()))
        outputs.append(output)
    batched = [k for k, v in outputs[0].items() if torch.is_tensor(v) and v.dim()]
    merged = {k: torch.cat([o[k] for o in outputs]) for k in batched}
    return torch.stack(losses), merged


def run_record(args: TrainingArguments, accelerator) -> dict:
    """How the run was launched: processes, effective batch size and the mixed precision in use.

    Parameters
    ----------
    args : TrainingArguments
        The run's arguments.
    accelerator : accelerate.Accelerator
        The Trainer's accelerator; its state is the truth, whether the setting came from a flag or
        from the accelerate config (``accelerate launch --mixed_precision``, ``accelerate config``).

    Returns
    -------
    dict
        ``num_processes``, ``per_device_train_batch_size``, ``gradient_accumulation_steps``,
        ``effective_train_batch_size`` (their product) and ``mixed_precision`` (``no``, ``fp16``,
        ``bf16``, ...).
    """
    processes = accelerator.num_processes
    return {
        "num_processes": processes,
        "per_device_train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "effective_train_batch_size": args.train_batch_size * processes * args.gradient_accumulation_steps,
        "mixed_precision": str(accelerator.mixed_precision),
    }
