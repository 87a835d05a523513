"""Dice (Sørensen) and IoU (Jaccard) for binary masks, per image and pooled over all pixels."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from sam_mito.errors import SamMitoError

#: The packaged ``evaluate`` module script; ``evaluate.load(str(METRIC_SCRIPT))`` loads it.
METRIC_SCRIPT = Path(str(resources.files("sam_mito").joinpath("assets", "mito_dice_iou", "mito_dice_iou.py")))


Counts = tuple[np.ndarray, np.ndarray, np.ndarray]


def overlap_counts(predictions: np.ndarray, references: np.ndarray) -> Counts:
    """Per-image pixel counts ``(intersection, prediction, reference)`` of binary masks.

    Parameters
    ----------
    predictions, references : numpy.ndarray
        One ``(H, W)`` mask or a batch ``(N, H, W)``, boolean or {0, 1}, of the same shape.

    Returns
    -------
    intersection, prediction, reference : numpy.ndarray
        ``(N,)`` pixel counts. Counts from several batches can be concatenated and scored together
        with :func:`scores_from_counts`.
    """
    pred, ref = np.asarray(predictions).astype(bool), np.asarray(references).astype(bool)
    if pred.shape != ref.shape:
        raise SamMitoError(
            f"prediction shape {pred.shape} != reference shape {ref.shape}; expected masks of the same shape"
        )
    n_images = 1 if pred.ndim == 2 else pred.shape[0]
    pred, ref = pred.reshape(n_images, -1), ref.reshape(n_images, -1)
    return (pred & ref).sum(axis=1), pred.sum(axis=1), ref.sum(axis=1)


def scores_from_counts(
    intersection: np.ndarray, pred_sum: np.ndarray, ref_sum: np.ndarray, *, empty_score: float = 1.0
) -> dict[str, float]:
    """Dice and IoU, per image (mean) and pooled, from :func:`overlap_counts`.

    Parameters
    ----------
    intersection, pred_sum, ref_sum : numpy.ndarray
        Per-image counts from :func:`overlap_counts`.
    empty_score : float, keyword-only
        Score of an image where both masks are empty.

    Returns
    -------
    dict
        As :func:`dice_iou`.
    """
    intersection, pred_sum, ref_sum = (
        np.asarray(a, dtype=np.int64) for a in (intersection, pred_sum, ref_sum)
    )
    dice, iou = per_image_scores(intersection, pred_sum, ref_sum, empty_score=empty_score)
    total_i, total_p, total_r = intersection.sum(), pred_sum.sum(), ref_sum.sum()
    total_u = total_p + total_r - total_i
    return {
        "dice": float(dice.mean()),
        "iou": float(iou.mean()),
        "pooled_dice": float(2 * total_i / (total_p + total_r)) if total_p + total_r else empty_score,
        "pooled_iou": float(total_i / total_u) if total_u else empty_score,
        "n_images": len(intersection),
    }


def per_image_scores(
    intersection: np.ndarray, pred_sum: np.ndarray, ref_sum: np.ndarray, *, empty_score: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Dice and IoU of each image from :func:`overlap_counts`.

    Parameters
    ----------
    intersection, pred_sum, ref_sum : numpy.ndarray
        Per-image counts from :func:`overlap_counts`.
    empty_score : float, keyword-only
        Score where both masks are empty.

    Returns
    -------
    dice, iou : numpy.ndarray
        ``(N,)`` scores.
    """
    union = pred_sum + ref_sum - intersection
    both_empty = union == 0
    dice = np.where(both_empty, empty_score, 2 * intersection / np.maximum(pred_sum + ref_sum, 1))
    iou = np.where(both_empty, empty_score, intersection / np.maximum(union, 1))
    return dice, iou


def dice_iou(
    predictions: np.ndarray, references: np.ndarray, *, empty_score: float = 1.0
) -> dict[str, float]:
    """Dice and IoU of binary masks, averaged per image and pooled over all pixels.

    Parameters
    ----------
    predictions, references : numpy.ndarray
        Boolean or {0, 1} masks of the same shape: one image ``(H, W)`` or a batch ``(N, H, W)``.
    empty_score : float, keyword-only
        Per-image score when both prediction and reference are empty (nothing to find, nothing
        found). Pooled scores are unaffected: they sum pixels over the whole batch first, as the
        EPFL protocol scores a whole test volume.

    Returns
    -------
    dict
        ``dice``, ``iou`` (means over images), ``pooled_dice``, ``pooled_iou``, ``n_images``.

    Examples
    --------
    >>> import numpy as np
    >>> dice_iou(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]]))["iou"]
    0.5
    """
    return scores_from_counts(*overlap_counts(predictions, references), empty_score=empty_score)


def load_metric():
    """The metrics as a local ``evaluate`` module (no Hub access): ``evaluate.load`` of the packaged script.

    Needs the optional ``evaluate`` package: ``pip install "sam-mito[metrics]"``.

    Raises
    ------
    SamMitoError
        ``evaluate`` is not installed.
    """
    try:
        import evaluate
    except ModuleNotFoundError as err:
        if err.name != "evaluate":
            raise
        raise SamMitoError(
            "load_metric() needs the optional package evaluate, which is not installed: "
            'pip install "sam-mito[metrics]"'
        ) from err

    return evaluate.load(str(METRIC_SCRIPT))
