"""What a run's evaluation says: the Trainer's metrics, and a warning for a model that predicts nothing."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import EvalPrediction

from sam_mito.evaluation.metrics import dice_iou
from sam_mito.training.config import SamMitoConfig

logger = logging.getLogger(__name__)


def compute_segmentation_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Trainer ``compute_metrics``: Dice and IoU of thresholded logits against the reference masks.

    Also ``predicted_foreground``, the fraction of patches with at least one foreground pixel
    predicted: 0 means the model predicts nothing anywhere (see :func:`warn_if_blind`).
    """
    logits, references = prediction.predictions, prediction.label_ids
    masks = logits > 0
    scores = dice_iou(masks, references > 0.5)
    scores["predicted_foreground"] = float(masks.reshape(len(masks), -1).any(axis=1).mean())
    return {k: v for k, v in scores.items() if k != "n_images"}


def warn_if_blind(metrics: dict, config: SamMitoConfig, patches: int) -> bool:
    """Warn when an evaluation found no predicted foreground on any patch; returns whether it did.

    Such a model learned nothing it can show (a Dice of 0, or of the empty masks): at a low
    learning rate the decoder can stall, collapsing to empty masks.

    Parameters
    ----------
    metrics : dict
        ``eval_*`` metrics of :meth:`SamMitoTrainer.evaluate` (with ``eval_predicted_foreground``).
    config : SamMitoConfig
        The run's settings, named in the advice.
    patches : int
        Patches evaluated.

    Returns
    -------
    bool
    """
    if metrics.get("eval_predicted_foreground", 1.0) > 0:
        return False
    logger.warning(
        "model %s predicts no foreground on any of the %d %s patches (Dice %.4f): it learned nothing "
        "it can show. Train again with a higher learning_rate (learning_rate %s here; the tiny base "
        "learns at 1e-4, not 1e-5) or a lower iou_weight (iou_weight %s here; docs/training.md)",
        Path(config.output_dir).name,
        patches,
        config.eval_split,
        metrics.get("eval_dice", float("nan")),
        config.learning_rate,
        config.iou_weight,
    )
    return True
