"""Dice (Sørensen) and IoU (Jaccard) for binary masks, per image and pooled over all pixels."""

from __future__ import annotations

import numpy as np


def _counts(predictions: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, ref = np.asarray(predictions).astype(bool), np.asarray(references).astype(bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    n_images = 1 if pred.ndim == 2 else pred.shape[0]
    pred, ref = pred.reshape(n_images, -1), ref.reshape(n_images, -1)
    return (pred & ref).sum(axis=1), pred.sum(axis=1), ref.sum(axis=1)


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
    intersection, pred_sum, ref_sum = _counts(predictions, references)
    union = pred_sum + ref_sum - intersection
    both_empty = union == 0
    dice = np.where(both_empty, empty_score, 2 * intersection / np.maximum(pred_sum + ref_sum, 1))
    iou = np.where(both_empty, empty_score, intersection / np.maximum(union, 1))
    total_i, total_p, total_r = intersection.sum(), pred_sum.sum(), ref_sum.sum()
    total_u = total_p + total_r - total_i
    return {
        "dice": float(dice.mean()),
        "iou": float(iou.mean()),
        "pooled_dice": float(2 * total_i / (total_p + total_r)) if total_p + total_r else empty_score,
        "pooled_iou": float(total_i / total_u) if total_u else empty_score,
        "n_images": len(intersection),
    }
