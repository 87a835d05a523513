"""Score a predicted volume against its ground truth the way EM papers score EPFL, streamed.

Foreground: IoU (Jaccard) and Dice pooled voxel-wise over the whole volume, and per slice.
Instances: the truth's instances are its 3D connected components (6-connectivity); the
prediction's are given (an instance-label volume) or its own 3D connected components. Pairs whose
IoU is at least :data:`MATCH_IOU` are matched one to one (greedily, highest IoU first; above 0.5
a pair can only ever be matched one way), giving precision, recall, F1 and the mean IoU of the
matched pairs.

Volumes are read block by block (see :mod:`sam_mito.volumes.instances`), twice: a volume larger than
memory is never loaded whole.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sam_mito.errors import SamMitoError
from sam_mito.evaluation.metrics import per_image_scores
from sam_mito.files import atomic_file, check_output_file, check_outputs
from sam_mito.results import Result
from sam_mito.volumes.instances import Block, SizeCounter, VolumeLabeler, block_grid
from sam_mito.volumes.reading import open_volume
from sam_mito.volumes.volume import Volume

logger = logging.getLogger(__name__)

#: Instances match when their IoU is at least this.
MATCH_IOU = 0.5
#: The JSON report's keys, in order.
SCORE_KEYS = (
    "foreground_iou",
    "foreground_dice",
    "instance_precision",
    "instance_recall",
    "instance_f1",
    "matched_iou",
    "per_slice",
)


@dataclass
class VolumeScores(Result):
    """A volume's scores (:func:`score_volumes`); ``to_dict()`` is what ``--json`` writes."""

    foreground_iou: float
    foreground_dice: float
    instance_precision: float
    instance_recall: float
    instance_f1: float
    matched_iou: float | None
    per_slice: list[dict]


class BinaryReader:
    """Read a mask volume's blocks as booleans, checking it is binary: {0, 1} or {0, 255}."""

    def __init__(self, volume: Volume, name: str) -> None:
        self.volume, self.name, self.seen = volume, name, set()

    def __call__(self, block: Block) -> np.ndarray:
        raw = self.volume.block(*block)
        if raw.dtype == bool:
            return raw
        foreground = raw != 0
        if raw.dtype.kind == "f" and np.isnan(raw).any():
            raise SamMitoError(f"{self.volume.source}: {self.name} holds NaN; expected a binary mask")
        self.seen.update(np.unique(raw[foreground]).tolist()[:3])
        if not (self.seen <= {1} or self.seen <= {255}):
            shown = ", ".join(str(v) for v in sorted(self.seen))
            raise SamMitoError(
                f"{self.volume.source}: {self.name} has values {{0, {shown}}}; expected a binary mask, "
                "{0, 1} or {0, 255} (threshold a probability map first)"
            )
        return foreground


def _check_labels(volume: Volume) -> None:
    if volume.dtype.kind not in "iu":
        raise SamMitoError(
            f"{volume.source}: labels of type {volume.dtype}; expected unsigned integer instance ids (0 = background)"
        )


def _check_label_ids(volume: Volume, ids: np.ndarray) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 32):
        raise SamMitoError(
            f"{volume.source}: label ids from {ids.min()} to {ids.max()}; expected 0 (background) to 2**32 - 1"
        )


def score_volumes(
    prediction: str | Path,
    truth: str | Path,
    *,
    labels: str | Path | None = None,
    json_path: str | Path | None = None,
) -> VolumeScores:
    """Foreground and instance scores of a binary prediction volume against the ground truth.

    Parameters
    ----------
    prediction, truth : str or Path
        Binary masks ({0, 1} or {0, 255}) of the same shape: TIFF stacks, slice folders or zarr.
    labels : str or Path, keyword-only
        Instance labels of the prediction (integer, 0 = background, same shape); by default the
        prediction's 3D connected components.
    json_path : str or Path, keyword-only
        Also write the scores here as JSON (atomically; never over an input).

    Returns
    -------
    VolumeScores
        The fields :data:`SCORE_KEYS`: ``foreground_iou`` and ``foreground_dice`` pooled over every
        voxel; ``instance_precision``, ``instance_recall``, ``instance_f1`` at IoU >= 0.5;
        ``matched_iou`` (mean IoU of matched pairs, None without any); ``per_slice``, one
        ``{"slice", "iou", "dice", "truth_voxels", "predicted_voxels"}`` per slice (both 1.0 where
        truth and prediction are empty).
    """
    volumes = {"prediction": open_volume(prediction), "truth": open_volume(truth)}
    if labels is not None:
        volumes["labels"] = open_volume(labels)
        _check_labels(volumes["labels"])
    shape = volumes["prediction"].shape
    for name, volume in volumes.items():
        if volume.shape != shape:
            raise SamMitoError(
                f"{volume.source}: {name} has shape {volume.shape}; expected {shape} like the prediction "
                f"{volumes['prediction'].source}"
            )
    if json_path is not None:
        inputs = {"prediction": prediction, "truth": truth, "labels": labels}
        check_outputs({"json_path": json_path}, inputs, overwrite=True)  # a report is replaced
        check_output_file(json_path, name="json_path")
    chunked = all(v.chunks is not None for v in volumes.values())
    grid = block_grid(shape, volumes["prediction"].chunks if chunked else None)
    read_pred, read_truth = (
        BinaryReader(volumes["prediction"], "prediction"),
        BinaryReader(volumes["truth"], "truth"),
    )

    depth = shape[0]
    counts = np.zeros((3, depth), np.int64)  # intersection, predicted, truth voxels per slice
    truth_labeler = VolumeLabeler(grid)
    pred_labeler = VolumeLabeler(grid) if labels is None else None
    for index, block in tqdm(list(grid), desc="scoring (1/2)", unit="block"):
        pred, true = read_pred(block), read_truth(block)
        zs = block[0]
        counts[0, zs] += (pred & true).sum(axis=(1, 2))
        counts[1, zs] += pred.sum(axis=(1, 2))
        counts[2, zs] += true.sum(axis=(1, 2))
        truth_labeler.add(index, true)
        if pred_labeler is not None:
            pred_labeler.add(index, pred)
        else:
            _check_label_ids(volumes["labels"], volumes["labels"].block(*block))
    truth_labeler.finish()
    if pred_labeler is not None:
        pred_labeler.finish()

    pairs, truth_sizes, pred_sizes = SizeCounter(), SizeCounter(), SizeCounter()
    for index, block in tqdm(list(grid), desc="scoring (2/2)", unit="block"):
        true_ids = truth_labeler.labels(index, read_truth(block)).astype(np.uint64)
        if pred_labeler is not None:
            pred_ids = pred_labeler.labels(index, read_pred(block)).astype(np.uint64)
        else:
            pred_ids = volumes["labels"].block(*block).astype(np.uint64)
        both = (true_ids > 0) & (pred_ids > 0)
        pairs.add((true_ids[both] << np.uint64(32)) | pred_ids[both])
        truth_sizes.add(true_ids[true_ids > 0])
        pred_sizes.add(pred_ids[pred_ids > 0])

    scores = {**_foreground(counts), **_instances(pairs.result(), truth_sizes.result(), pred_sizes.result())}
    scores["per_slice"] = _per_slice(counts)
    scores = VolumeScores(**{key: scores[key] for key in SCORE_KEYS})
    if json_path is not None:
        with atomic_file(json_path) as partial:
            partial.write_text(json.dumps(scores.to_dict(), indent=1))
    return scores


def _foreground(counts: np.ndarray) -> dict:
    intersection, predicted, truth = counts.sum(axis=1)
    union, total = predicted + truth - intersection, predicted + truth
    return {
        "foreground_iou": float(intersection / union) if union else 1.0,
        "foreground_dice": float(2 * intersection / total) if total else 1.0,
    }


def _per_slice(counts: np.ndarray) -> list[dict]:
    dice, iou = per_image_scores(*counts[[0, 1, 2]])
    return [
        {
            "slice": z,
            "iou": float(iou[z]),
            "dice": float(dice[z]),
            "truth_voxels": int(counts[2, z]),
            "predicted_voxels": int(counts[1, z]),
        }
        for z in range(counts.shape[1])
    ]


def match_instances(
    pairs: tuple[np.ndarray, np.ndarray],
    truth_sizes: tuple[np.ndarray, np.ndarray],
    pred_sizes: tuple[np.ndarray, np.ndarray],
) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(truth id, predicted id, IoU)`` with IoU >= :data:`MATCH_IOU`, best first.

    Parameters
    ----------
    pairs : tuple of numpy.ndarray
        Packed ``truth << 32 | predicted`` id keys and their overlapping voxel counts.
    truth_sizes, pred_sizes : tuple of numpy.ndarray
        Sorted instance ids and their voxel counts.

    Returns
    -------
    list of tuple
        Matched pairs, greedily by decreasing IoU (ties: lower ids first).
    """
    keys, overlap = pairs
    truth_ids = (keys >> np.uint64(32)).astype(np.int64)
    pred_ids = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    union = (
        truth_sizes[1][np.searchsorted(truth_sizes[0], truth_ids)]
        + pred_sizes[1][np.searchsorted(pred_sizes[0], pred_ids)]
        - overlap
    )
    iou = overlap / np.maximum(union, 1)
    candidates = np.flatnonzero(iou >= MATCH_IOU)
    order = candidates[np.lexsort((pred_ids[candidates], truth_ids[candidates], -iou[candidates]))]
    used_truth, used_pred, matches = set(), set(), []
    for i in order:
        t, p = int(truth_ids[i]), int(pred_ids[i])
        if t not in used_truth and p not in used_pred:
            used_truth.add(t)
            used_pred.add(p)
            matches.append((t, p, float(iou[i])))
    return matches


def _instances(pairs, truth_sizes, pred_sizes) -> dict:
    matches = match_instances(pairs, truth_sizes, pred_sizes)
    n_truth, n_pred, n_matched = truth_sizes[0].size, pred_sizes[0].size, len(matches)
    logger.info("instances: %d in the truth, %d predicted, %d matched", n_truth, n_pred, n_matched)
    empty = n_truth == 0 and n_pred == 0
    return {
        "instance_precision": n_matched / n_pred if n_pred else float(empty),
        "instance_recall": n_matched / n_truth if n_truth else float(empty),
        "instance_f1": 2 * n_matched / (n_truth + n_pred) if n_truth + n_pred else 1.0,
        "matched_iou": float(np.mean([m[2] for m in matches])) if matches else None,
    }


def score_table(scores: dict) -> str:
    """The scores as a markdown table (per-slice figures summarised by their mean and minimum)."""
    per_slice_iou = [row["iou"] for row in scores["per_slice"]]
    matched = scores["matched_iou"]
    rows = [
        ("foreground IoU (voxel-wise, whole volume)", scores["foreground_iou"]),
        ("foreground Dice (voxel-wise, whole volume)", scores["foreground_dice"]),
        ("per-slice IoU, mean / min", f"{np.mean(per_slice_iou):.4f} / {np.min(per_slice_iou):.4f}"),
        ("instance precision (IoU >= 0.5)", scores["instance_precision"]),
        ("instance recall (IoU >= 0.5)", scores["instance_recall"]),
        ("instance F1 (IoU >= 0.5)", scores["instance_f1"]),
        ("mean IoU of matched instances", "n/a" if matched is None else matched),
    ]
    lines = ["| score | value |", "|---|---|"]
    lines += [
        f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |"
        for name, value in rows
    ]
    return "\n".join(lines)
