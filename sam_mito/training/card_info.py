"""What a training run's model card shows, from its settings (:class:`sam_mito.hub.cards.ModelCardInfo`)."""

from __future__ import annotations

from pathlib import Path

from sam_mito.defaults import TINY_BASE
from sam_mito.hub.cards import ModelCardInfo
from sam_mito.models.loading import tiny_base_path
from sam_mito.paths import public_name
from sam_mito.training.config import SamMitoConfig

#: Besides the step count, the settings the card's hyperparameter table shows.
CARD_SETTINGS = (
    "learning_rate",
    "optim",
    "weight_decay",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
)
CARD_SETTINGS_AFTER_STEPS = ("lr_scheduler_type", "embedding_cache", "mask_outputs", "precision", "seed")


def run_card_info(
    args: SamMitoConfig, *, family: str, parameters: tuple[int, int], unreached: list[str], run: dict
) -> ModelCardInfo:
    """The card data of a run with these settings.

    Parameters
    ----------
    args : SamMitoConfig
        The run's settings.
    family : str
        The base's family name.
    parameters : tuple of int, keyword-only
        Trainable and total parameter counts after freezing.
    unreached : list of str, keyword-only
        Decoder modules frozen because the loss does not reach them.
    run : dict, keyword-only
        How training was launched (:func:`sam_mito.training.processes.run_record`).

    Returns
    -------
    ModelCardInfo
    """
    base = args.model_name_or_path
    steps = "max_steps" if args.max_steps > 0 else "num_train_epochs"
    keys = CARD_SETTINGS + (steps,) + CARD_SETTINGS_AFTER_STEPS
    weights = {"Dice": args.dice_weight, "binary cross-entropy": args.ce_weight}
    weights["IoU-prediction mean squared error"] = args.iou_weight
    weights.update({"single-point prompts": args.point_weight} if args.point_weight else {})
    multimask = "three multimask outputs (best one's Dice + cross-entropy, all IoUs)"
    weights.update({multimask: args.multimask_weight} if args.mask_outputs == "all" else {})
    return ModelCardInfo(
        base_model=public_name(base),
        family=family,
        dataset=public_name(str(args.dataset)),
        train_split=args.train_split,
        prompt_mode=args.prompt_mode,
        box_jitter=args.box_jitter,
        loss_weights=weights,
        mask_outputs=args.mask_outputs,
        trainable_parameters=parameters[0],
        total_parameters=parameters[1],
        unreached=unreached,
        run=run,
        hyperparameters={k: str(getattr(getattr(args, k), "value", getattr(args, k))) for k in keys},
        repo_or_path=args.hub_model_id or Path(args.output_dir).name,
        demo_base=base in (TINY_BASE, str(tiny_base_path())),
        point_weight=args.point_weight,
    )
