"""Decoder-only fine-tuning of SAM: prompt datasets, the standalone Trainer, and the recipe."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from transformers import SamModel, SamProcessor, Trainer, set_seed
from transformers.trainer_utils import HubStrategy

from sam_mito.data.patches import load_patches
from sam_mito.errors import SamMitoError
from sam_mito.hub.cards import TRAINING_CONFIG, VALIDATION_FILE, ModelCardInfo
from sam_mito.hub.uploads import AllowListedPushes
from sam_mito.models.decoding import Decoded, decode, decode_all_masks
from sam_mito.models.families import family_of
from sam_mito.models.loading import (
    freeze_for_decoder_training,
    freeze_unused_outputs,
    load_sam,
    processor_for,
)
from sam_mito.paths import public_json
from sam_mito.results import Result
from sam_mito.training.card_info import run_card_info
from sam_mito.training.config import RUN_RECORD, SamMitoConfig
from sam_mito.training.losses import MaskDecoderLoss
from sam_mito.training.outcome import compute_segmentation_metrics, warn_if_blind
from sam_mito.training.processes import (
    freeze_unreached,
    keep_last_batch,
    per_row_losses,
    run_record,
    whole_modules,
)
from sam_mito.training.prompt_dataset import PromptDataset, collate_prompts, prompt_dataset
from sam_mito.training.prompt_sampling import jittered_boxes, point_batch
from sam_mito.training.run_checks import check_train_size, prepare_output_dir

logger = logging.getLogger(__name__)


class SamMitoTrainer(AllowListedPushes, Trainer):
    """A Trainer that fine-tunes SAM's mask decoder from box prompts with Dice + cross-entropy.

    It prepares what it needs itself: a model given by name is loaded, everything but the mask
    decoder is frozen, raw splits made by ``sam-mito prepare`` are encoded once into the embedding
    cache, and the collator and metrics are set. Decoder parameters that the loss does not reach
    (found by one backward pass on the first training row) are frozen too, so DDP needs no search for
    unused parameters. Evaluation never drops rows (``dataloader_drop_last`` applies to training)
    and its loss is the mean of per-row losses, the same on any number of processes.

    Parameters
    ----------
    model : str or SamModel
        Hub id, local folder, ``sam-mito/tiny-base``, or a loaded ``SamModel``
        (default: ``args.model_name_or_path``).
    args : SamMitoConfig
        Training arguments.
    train_dataset, eval_dataset : datasets.Dataset or PromptDataset, optional
        Splits of a prepared dataset (``datasets.load_dataset(folder)["train"]``), or datasets
        already wrapped by :func:`prompt_dataset`.
    processing_class : SamProcessor or its image processor, optional
        Default: the model's own processor, or one matched to its input size.
    **kwargs
        Passed to ``transformers.Trainer``.
    """

    args: SamMitoConfig

    def __init__(
        self,
        model: str | SamModel | None = None,
        args: SamMitoConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ) -> None:
        if args is None:
            raise SamMitoError("SamMitoTrainer needs args=SamMitoConfig(output_dir=...)")
        if args.push_to_hub and args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            raise SamMitoError(
                f"hub_strategy '{args.hub_strategy.value}' would upload optimizer and RNG state; sam-mito "
                "uploads the model only: use 'end' or 'every_save'"
            )
        model = args.model_name_or_path if model is None else model
        if isinstance(model, str | Path):
            model, processor = load_sam(str(model))
        elif hasattr(processing_class, "image_processor"):  # SamProcessor or another family's
            processor = processing_class
        elif processing_class is not None:
            processor = SamProcessor(image_processor=processing_class)
        else:
            processor = processor_for(model.config)
        _, self.total_parameters = freeze_for_decoder_training(model)
        freeze_unused_outputs(model, mask_outputs=args.mask_outputs, iou_weight=args.iou_weight)
        self.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if train_dataset is not None:
            check_train_size(args, len(train_dataset))
        model.to(args.device)
        if isinstance(train_dataset, datasets.Dataset):
            train_dataset = prompt_dataset(model, processor, train_dataset, args, name=args.train_split)
        if isinstance(train_dataset, PromptDataset):
            # Saved with the model, so inference tiles and normalises slices as in training.
            model.config.sam_mito = train_dataset.inference_settings()
        elif train_dataset is not None:
            logger.warning(
                "train_dataset is a %s, not a prepared split or PromptDataset: the model's config "
                "records no patch size or normalisation, so inference will use its defaults",
                type(train_dataset).__name__,
            )
        if isinstance(eval_dataset, datasets.Dataset):
            eval_dataset = prompt_dataset(
                model, processor, eval_dataset, args, name=args.eval_split or "eval"
            )
        kwargs.setdefault("data_collator", collate_prompts)
        kwargs.setdefault("compute_metrics", compute_segmentation_metrics)
        # The image processor alone: SamProcessor.from_pretrained reads it back, and Trainer's
        # tokenizer alignment fails on a processor without a tokenizer.
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processor.image_processor,
            **kwargs,
        )
        self.loss_fn = MaskDecoderLoss(
            dice_weight=args.dice_weight, ce_weight=args.ce_weight, iou_weight=args.iou_weight
        )
        self.loss_is_scaled_for_ga = False
        self._row_losses: list[torch.Tensor] | None = None
        #: Decoder modules frozen because the loss does not reach them.
        self.unreached: list[str] = self._freeze_unreached() if self.train_dataset is not None else []

    def _freeze_unreached(self) -> list[str]:
        if isinstance(self.train_dataset, torch.utils.data.IterableDataset):
            return []  # an iterable dataset: nothing to probe with, keep what is trainable
        inputs = self._prepare_inputs(self.data_collator([self.train_dataset[0]]))
        names = freeze_unreached(self.model, lambda: self.compute_loss(self.model, inputs))
        self.trainable_parameters = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return whole_modules(self.model, names)

    def decode_batch(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, Decoded]:
        """Decoder outputs at the targets' resolution for the batch's (jittered, when training) boxes.

        Returns
        -------
        dict
            ``"single"``: the single mask per box (``M = 1``); with ``mask_outputs='all'`` also
            ``"multimask"``: SAM's three masks per box, from the same decoder pass
            (:func:`sam_mito.models.decoding.decode_all_masks`).
        """
        size = tuple(inputs["targets"].shape[-2:])
        boxes = inputs["boxes"]
        if model.training and self.args.box_jitter > 0:
            boxes = jittered_boxes(
                boxes, inputs["index"], max_shift=self.args.box_jitter, size=size, **self._draw()
            )
        return self._decode(model, inputs, size, boxes=boxes)

    def _draw(self) -> dict[str, int]:
        return {"seed": self.args.seed, "step": self.state.global_step}

    def _decode(self, model, inputs, size, **prompts) -> dict[str, Decoded]:
        image = {k: inputs[k] for k in ("image_embeddings", "pixel_values") if k in inputs}
        if self.args.mask_outputs == "single":
            return {"single": decode(model, size, **image, **prompts)}
        both = decode_all_masks(model, size, **image, **prompts)
        return {
            "single": Decoded(both.logits[:, :, :1], both.iou_scores[:, :, :1]),
            "multimask": Decoded(both.logits[:, :, 1:], both.iou_scores[:, :, 1:]),
        }

    def _prompt_loss(
        self, outputs: dict[str, Decoded], valid: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        single = outputs["single"]
        loss = self.loss_fn(single.logits[valid], single.iou_scores[valid], targets[valid])
        if "multimask" in outputs:
            multi = outputs["multimask"]
            loss = loss + self.args.multimask_weight * self.loss_fn(
                multi.logits[valid], multi.iou_scores[valid], targets[valid]
            )
        return loss

    def _point_loss(self, model, inputs) -> torch.Tensor:
        """The loss on single-point prompts drawn for this step (:mod:`sam_mito.training.prompt_sampling`)."""
        points, targets, valid = point_batch(
            inputs["instances"],
            inputs["index"],
            max_objects=self.args.point_objects,
            background=self.args.background_points,
            **self._draw(),
        )
        if not valid.any():
            return torch.zeros((), device=targets.device)
        outputs = self._decode(model, inputs, tuple(targets.shape[-2:]), points=points)
        return self._prompt_loss(outputs, valid, targets)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """SAM's decoder loss over every real (unpadded) box (:class:`sam_mito.training.losses.MaskDecoderLoss`).

        The single mask's DiceCE, plus, with ``mask_outputs='all'``, ``multimask_weight`` times the
        DiceCE of the best of the three multimask outputs; each with ``iou_weight`` times the squared
        error of the predicted IoUs. In training, plus ``point_weight`` times the same loss on
        single-point prompts drawn for the step (evaluation scores the boxes alone).
        """
        outputs = self.decode_batch(model, inputs)
        loss = self._prompt_loss(outputs, inputs["box_valid"], inputs["targets"])
        if model.training and self.args.point_weight > 0 and "instances" in inputs:
            loss = loss + self.args.point_weight * self._point_loss(model, inputs)
        return (loss, {"logits": outputs["single"].logits[:, :, 0]}) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """One step; a non-finite loss (on any process) stops training before the optimizer step."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        finite = torch.isfinite(loss.detach()).float().reshape(1)
        if self.args.world_size > 1:
            finite = self.accelerator.gather(finite)
        if not bool(finite.all()):
            raise SamMitoError(
                f"non-finite training loss at step {self.state.global_step + 1} ({loss.item()} on process "
                f"{self.args.process_index}): stopped before the weights took that step; lower "
                f"learning_rate or check the data (checkpoints already in {self.args.output_dir} are intact)"
            )
        return loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save as ``Trainer.save_model`` does, but never weights that hold NaN or infinity."""
        bad = [name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise SamMitoError(
                f"non-finite weights after step {self.state.global_step} ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}): not saved to {output_dir or self.args.output_dir}"
            )
        super().save_model(output_dir, _internal_call=_internal_call)

    def get_eval_dataloader(self, eval_dataset=None):
        """The Trainer's evaluation loader, keeping every row: ``dataloader_drop_last`` is for training."""
        with keep_last_batch(self.args):
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        """The Trainer's test loader, keeping every row: ``dataloader_drop_last`` is for training."""
        with keep_last_batch(self.args):
            return super().get_test_dataloader(test_dataset)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The Trainer's loop, with ``<prefix>_loss`` the mean of every row's own loss, each row once.

        The Trainer averages batch losses, which under distributed evaluation include the rows
        repeated to give every process full batches; per-row losses gathered with
        ``gather_for_metrics`` leave those out, so the loss is the one a single process reports.
        """
        self._row_losses = []
        try:
            output = super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        finally:
            losses, self._row_losses = self._row_losses, None
        if losses:
            output.metrics[f"{metric_key_prefix}_loss"] = torch.cat(losses).float().mean().item()
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Mean loss, per-patch union of the boxes' logits, and the union of their targets.

        Each row's loss is computed on its own and, during :meth:`evaluation_loop`, gathered from
        all processes for the evaluation loss.
        """
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            losses, outputs = per_row_losses(self.compute_loss, model, inputs)
        if self._row_losses is not None:
            self._row_losses.append(self.accelerator.gather_for_metrics(losses).cpu())
        loss = losses.mean()
        if prediction_loss_only:
            return loss, None, None
        valid = inputs["box_valid"][..., None, None]
        merged = outputs["logits"].masked_fill(~valid, -math.inf).amax(dim=1)
        reference = (inputs["targets"] * valid).amax(dim=1)
        return loss, merged, reference

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Save weights and processor, plus the run's settings as JSON with no token and no local paths.

        ``training_args.bin``, which the Trainer pickles, holds no token either (see
        :meth:`sam_mito.training.config.SamMitoConfig.__getstate__`).
        """
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            folder = Path(output_dir or self.args.output_dir)
            settings = {  # to_dict masks every *_token field
                **public_json(self.args.to_dict()),
                RUN_RECORD: run_record(self.args, self.accelerator),
            }
            (folder / TRAINING_CONFIG).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")

    def card_info(self) -> ModelCardInfo:
        """What the model card shows about this run (:func:`sam_mito.training.card_info.run_card_info`)."""
        return run_card_info(
            self.args,
            family=family_of(self.model.config).name,
            parameters=(self.trainable_parameters, self.total_parameters),
            unreached=self.unreached,
            run=run_record(self.args, self.accelerator),
        )

    def create_model_card(self, model_name: str | None = None, **kwargs) -> None:
        """Write sam-mito's card (``hub_cards/model_card.md``) and its data into the output folder."""
        if not self.is_world_process_zero():
            return
        info = self.card_info()
        validation = Path(self.args.output_dir) / VALIDATION_FILE
        if validation.exists():
            info.add_validation(json.loads(validation.read_text()))
        info.write(self.args.output_dir, model_name=model_name)


@dataclass
class TrainingResult(Result):
    """What :func:`train` did: where the model is and its final metrics.

    Attributes
    ----------
    output_dir : str
        The model folder.
    train_metrics : dict
        The Trainer's training metrics (``train_loss``, ``train_runtime``, ...).
    eval_metrics : dict or None
        ``eval_*`` metrics on the evaluation split; None without one.
    """

    output_dir: str
    train_metrics: dict
    eval_metrics: dict | None = None

    @property
    def metrics(self) -> dict:
        """Training and evaluation metrics in one dict, as ``all_results.json`` holds them."""
        return {**self.train_metrics, **(self.eval_metrics or {})}


def train(config: SamMitoConfig) -> TrainingResult:
    """The fine-tuning recipe over :class:`SamMitoTrainer`; returns where the model is and its metrics.

    Check the settings and ``output_dir`` (:func:`prepare_output_dir`), load the prepared splits,
    let the Trainer load and freeze the base SAM and encode the patches once, train, save model +
    processor + card, evaluate, and push to the Hub if asked.

    Parameters
    ----------
    config : SamMitoConfig
        Every setting, ``dataset`` included.

    Returns
    -------
    TrainingResult
    """

    if config.dataset is None:
        raise SamMitoError("no dataset given: set `dataset` to a folder or Hub id made by `sam-mito prepare`")
    checkpoint = prepare_output_dir(config)
    set_seed(config.seed)
    train_split = load_patches(config.dataset, config.train_split)
    eval_split = load_patches(config.dataset, config.eval_split) if config.eval_split else None
    trainer = SamMitoTrainer(args=config, train_dataset=train_split, eval_dataset=eval_split)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    eval_metrics = None
    if eval_split is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        if trainer.is_world_process_zero():
            warn_if_blind(eval_metrics, config, len(eval_split))
    trainer.create_model_card()
    if config.push_to_hub:
        trainer.push_to_hub()
    # every process finishes before the process group goes: a rank leaving gloo early can abort another
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return TrainingResult(str(config.output_dir), dict(result.metrics), eval_metrics)
