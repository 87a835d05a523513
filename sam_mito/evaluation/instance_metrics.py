"""Instance metrics over a sweep of IoU thresholds: one-to-one matching, segmentation accuracy and AP.

The inputs are the voxel counts :func:`sam_mito.evaluation.scoring.score_volumes` accumulates
block by block: the overlap of every (truth, predicted) pair of instances that touch, and each
instance's size. From them, at every IoU threshold of :data:`IOU_THRESHOLDS` (0.5, 0.55, ..., 0.95):

- the one-to-one matching of :func:`match_instances`: pairs whose IoU is at least the threshold,
  greedily by decreasing IoU. Above IoU 0.5 a truth instance overlaps at most one prediction that
  much (and the reverse), so the matching is unique and equals COCO's; at exactly 0.5 two pairs
  can tie for one instance, and the tie goes to the higher-scored prediction, then the lower ids;
- the segmentation accuracy ``TP / (TP + FP + FN)`` (micro-sam's and elf's, averaged over the
  thresholds as the *mean segmentation accuracy*, mSA; SA50 at 0.5);
- the average precision of :func:`average_precision` (COCO's 101-point interpolation, as the
  MitoEM evaluation computes AP-50 and AP-75; averaged over the thresholds as AP).

IoU thresholds are the decimals themselves (``0.7``, not ``0.5 + 4 * 0.05``), so a pair whose IoU
is exactly 7/10 matches at 0.7.
"""

from __future__ import annotations

import numpy as np

#: Instances match, for precision, recall, F1 and the ``--matches`` file, when their IoU is at least this.
MATCH_IOU = 0.5
#: The IoU thresholds of mSA and AP: 0.5, 0.55, ..., 0.95.
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
#: The recall levels of COCO's interpolated precision: 0, 0.01, ..., 1.
RECALL_LEVELS = 101

Counts = tuple[np.ndarray, np.ndarray]


def pair_ious(pairs: Counts, truth_sizes: Counts, pred_sizes: Counts) -> tuple[np.ndarray, ...]:
    """The truth id, predicted id and IoU of every overlapping pair.

    Parameters
    ----------
    pairs : tuple of numpy.ndarray
        Packed ``truth << 32 | predicted`` id keys (``uint64``) and their overlapping voxel counts.
    truth_sizes, pred_sizes : tuple of numpy.ndarray
        Sorted instance ids and their voxel counts.

    Returns
    -------
    tuple of numpy.ndarray
        ``(truth_ids, pred_ids, iou)``, one entry per pair.
    """
    keys, overlap = pairs
    truth_ids = (keys >> np.uint64(32)).astype(np.int64)
    pred_ids = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    union = (
        truth_sizes[1][np.searchsorted(truth_sizes[0], truth_ids)]
        + pred_sizes[1][np.searchsorted(pred_sizes[0], pred_ids)]
        - overlap
    )
    return truth_ids, pred_ids, overlap / np.maximum(union, 1)


def match_instances(
    pairs: Counts,
    truth_sizes: Counts,
    pred_sizes: Counts,
    *,
    threshold: float = MATCH_IOU,
    scores: np.ndarray | None = None,
) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(truth id, predicted id, IoU)`` with IoU >= ``threshold``, best first.

    Parameters
    ----------
    pairs : tuple of numpy.ndarray
        Packed ``truth << 32 | predicted`` id keys and their overlapping voxel counts.
    truth_sizes, pred_sizes : tuple of numpy.ndarray
        Sorted instance ids and their voxel counts.
    threshold : float, keyword-only
        The least IoU of a match (default :data:`MATCH_IOU`); at 0.5 and above each instance has
        at most one candidate, except for ties at exactly 0.5.
    scores : numpy.ndarray, keyword-only
        A score per predicted instance, in the order of ``pred_sizes[0]``: ties of IoU go to the
        higher score (default: all equal).

    Returns
    -------
    list of tuple
        Matched pairs, greedily by decreasing IoU (ties: higher score, then lower ids, first).
    """
    truth_ids, pred_ids, iou = pair_ious(pairs, truth_sizes, pred_sizes)
    candidates = np.flatnonzero(iou >= threshold)
    score = (
        np.zeros(candidates.size)
        if scores is None
        else np.asarray(scores)[np.searchsorted(pred_sizes[0], pred_ids[candidates])]
    )
    order = candidates[np.lexsort((pred_ids[candidates], truth_ids[candidates], -score, -iou[candidates]))]
    used_truth, used_pred, matches = set(), set(), []
    for i in order:
        t, p = int(truth_ids[i]), int(pred_ids[i])
        if t not in used_truth and p not in used_pred:
            used_truth.add(t)
            used_pred.add(p)
            matches.append((t, p, float(iou[i])))
    return matches


def average_precision(true_positive: np.ndarray, scores: np.ndarray, *, n_truth: int) -> float:
    """COCO's average precision of predictions ranked by score: 101-point interpolated precision.

    The predictions are ranked by decreasing score; after each rank ``k`` the precision is
    ``p_k = TP_k / k`` and the recall ``r_k = TP_k / n_truth``. The interpolated precision at
    recall ``r`` is the best precision at that recall or beyond, ``max {p_k : r_k >= r}`` (0 where
    no rank reaches ``r``), and

        AP = (1 / 101) * sum over r = 0, 0.01, ..., 1 of the interpolated precision at r,

    as ``pycocotools``' ``COCOeval`` (and the MitoEM challenge's port of it to 3D) computes it,
    except that ``r_k >= r`` is decided exactly, in integers (``100 * TP_k >= i * n_truth``):
    a recall of exactly 0.3 reaches the level 0.3.

    Predictions of equal score are taken together, as one step of the curve (as
    scikit-learn's ``average_precision_score`` takes tied scores): the curve has a point only
    after the last prediction of each score, so AP never depends on how tied predictions are
    numbered. With all scores equal (no probabilities), the curve is one point, the overall
    precision ``P`` at the overall recall ``R``, and AP is ``P * (floor(100 R) + 1) / 101``.

    Parameters
    ----------
    true_positive : numpy.ndarray of bool
        Whether each prediction is matched to a truth instance.
    scores : numpy.ndarray
        Each prediction's score (its confidence), same length.
    n_truth : int, keyword-only
        Truth instances, matched or not.

    Returns
    -------
    float
        AP in [0, 1]. Without truth instances: 1.0 without predictions either, else 0.0 (as
        instance F1 counts an empty truth); without predictions: 0.0.
    """
    true_positive = np.asarray(true_positive, bool)
    scores = np.asarray(scores, np.float64)
    if n_truth == 0 or true_positive.size == 0:
        return float(n_truth == 0 and true_positive.size == 0)
    order = np.argsort(-scores, kind="stable")
    ranked_scores = scores[order]
    tp = np.cumsum(true_positive[order]).astype(np.int64)
    ranks = np.arange(1, tp.size + 1)
    last_of_score = np.append(ranked_scores[1:] != ranked_scores[:-1], True)
    tp, ranks = tp[last_of_score], ranks[last_of_score]
    precision = tp / ranks
    best_beyond = np.maximum.accumulate(precision[::-1])[::-1]
    levels = np.arange(RECALL_LEVELS, dtype=np.int64) * n_truth  # level i/100 times 100 * n_truth
    first = np.searchsorted(100 * tp, levels, side="left")  # first point with 100 * TP_k >= i * n_truth
    reached = first < tp.size
    interpolated = np.where(reached, best_beyond[np.minimum(first, tp.size - 1)], 0.0)
    return float(interpolated.sum() / RECALL_LEVELS)


def instance_scores(
    pairs: Counts, truth_sizes: Counts, pred_sizes: Counts, *, scores: np.ndarray | None = None
) -> dict:
    """Instance precision, recall and F1 at IoU 0.5, and mSA, SA50, AP, AP-50 and AP-75 over the sweep.

    Parameters
    ----------
    pairs : tuple of numpy.ndarray
        Packed ``truth << 32 | predicted`` id keys and their overlapping voxel counts.
    truth_sizes, pred_sizes : tuple of numpy.ndarray
        Sorted instance ids and their voxel counts.
    scores : numpy.ndarray, keyword-only
        A score per predicted instance, in the order of ``pred_sizes[0]``, that ranks the
        predictions for AP (such as the mean probability inside each); default: all equal.

    Returns
    -------
    dict
        ``instance_precision``, ``instance_recall``, ``instance_f1`` and ``matched_iou`` (mean IoU
        of the pairs matched at :data:`MATCH_IOU`, None without any);
        ``mean_segmentation_accuracy`` (mSA: the mean over :data:`IOU_THRESHOLDS` of
        ``TP / (TP + FP + FN)``, 1.0 at a threshold where both sides are empty) and
        ``segmentation_accuracy_50`` (at 0.5); ``average_precision`` (the mean over the
        thresholds of :func:`average_precision`), ``average_precision_50`` and
        ``average_precision_75``; ``object_scores`` (``"mean_probability"`` or ``"equal"``);
        ``per_threshold``, one ``{"iou_threshold", "true_positives", "false_positives",
        "false_negatives", "segmentation_accuracy", "average_precision"}`` per threshold.
    """
    n_truth, n_pred = truth_sizes[0].size, pred_sizes[0].size
    ranking = np.zeros(n_pred) if scores is None else np.asarray(scores, np.float64)
    per_threshold = []
    for threshold in IOU_THRESHOLDS:
        matches = match_instances(pairs, truth_sizes, pred_sizes, threshold=threshold, scores=scores)
        if threshold == MATCH_IOU:
            at_match_iou = matches
        tp = len(matches)
        fp, fn = n_pred - tp, n_truth - tp
        matched = np.isin(pred_sizes[0], np.array([m[1] for m in matches], np.uint64))
        per_threshold.append(
            {
                "iou_threshold": threshold,
                "true_positives": tp,
                "false_positives": fp,
                "false_negatives": fn,
                "segmentation_accuracy": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
                "average_precision": average_precision(matched, ranking, n_truth=n_truth),
            }
        )
    by_threshold = {row["iou_threshold"]: row for row in per_threshold}
    n_matched = len(at_match_iou)
    empty = n_truth == 0 and n_pred == 0
    return {
        "instance_precision": n_matched / n_pred if n_pred else float(empty),
        "instance_recall": n_matched / n_truth if n_truth else float(empty),
        "instance_f1": 2 * n_matched / (n_truth + n_pred) if n_truth + n_pred else 1.0,
        "matched_iou": float(np.mean([m[2] for m in at_match_iou])) if at_match_iou else None,
        "mean_segmentation_accuracy": float(np.mean([row["segmentation_accuracy"] for row in per_threshold])),
        "segmentation_accuracy_50": by_threshold[0.5]["segmentation_accuracy"],
        "average_precision": float(np.mean([row["average_precision"] for row in per_threshold])),
        "average_precision_50": by_threshold[0.5]["average_precision"],
        "average_precision_75": by_threshold[0.75]["average_precision"],
        "object_scores": "equal" if scores is None else "mean_probability",
        "per_threshold": per_threshold,
    }


def match_rows(
    matches: list[tuple[int, int, float]],
    truth_sizes: Counts,
    pred_sizes: Counts,
    *,
    truth_voxels: Counts,
    pred_voxels: Counts,
    shape: tuple[int, int, int],
) -> list[dict]:
    """The rows of the ``--matches`` file: matched pairs, then unmatched predictions, then unmatched truths.

    Parameters
    ----------
    matches : list of tuple
        ``(truth id, predicted id, IoU)`` as :func:`match_instances` returns them.
    truth_sizes, pred_sizes : tuple of numpy.ndarray
        Sorted instance ids and their voxel counts.
    truth_voxels, pred_voxels : tuple of numpy.ndarray, keyword-only
        The same ids and the flat index (C order in ``shape``) of each instance's first voxel.
    shape : tuple of int, keyword-only
        The volume's ``(Z, Y, X)``.

    Returns
    -------
    list of dict
        ``{"prediction", "truth", "iou", "prediction_voxels", "truth_voxels", "z", "y", "x"}``:
        the matched pairs in the order of ``matches`` (best IoU first), then the unmatched
        predictions and the unmatched truth instances by increasing id, with ``None`` for the side
        they lack. ``z, y, x`` is the first voxel (in z, then y, then x order) of the row's truth
        instance, or of its prediction where it has no truth instance.
    """
    truth_size, pred_size = (
        dict(zip(*(a.tolist() for a in s), strict=True)) for s in (truth_sizes, pred_sizes)
    )
    truth_first, pred_first = (
        dict(zip(*(a.tolist() for a in v), strict=True)) for v in (truth_voxels, pred_voxels)
    )

    def row(pred: int | None, truth: int | None, iou: float | None) -> dict:
        first = truth_first[truth] if truth is not None else pred_first[pred]
        z, y, x = (int(i) for i in np.unravel_index(first, shape))
        return {
            "prediction": pred,
            "truth": truth,
            "iou": iou,
            "prediction_voxels": None if pred is None else pred_size[pred],
            "truth_voxels": None if truth is None else truth_size[truth],
            "z": z,
            "y": y,
            "x": x,
        }

    matched_truth, matched_pred = {m[0] for m in matches}, {m[1] for m in matches}
    return (
        [row(p, t, iou) for t, p, iou in matches]
        + [row(p, None, None) for p in pred_size if p not in matched_pred]
        + [row(None, t, None) for t in truth_size if t not in matched_truth]
    )
