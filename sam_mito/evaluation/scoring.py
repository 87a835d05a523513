"""Score a predicted volume against its ground truth the way EM papers score EPFL, streamed.

Foreground: IoU (Jaccard) and Dice pooled voxel-wise over the whole volume, and per slice; the
background's IoU, and PyTorch Connectomics' "overall" IoU, the mean of the two.
Instances: the truth's instances are its 3D connected components (6-connectivity); the
prediction's are given (an instance-label volume) or its own 3D connected components. Pairs whose
IoU is at least :data:`MATCH_IOU` are matched one to one (greedily, highest IoU first; above 0.5
a pair can only ever be matched one way), giving precision, recall, F1 and the mean IoU of the
matched pairs; over the IoU thresholds 0.5, 0.55, ..., 0.95, the mean segmentation accuracy and
the average precision (:mod:`sam_mito.evaluation.instance_metrics`), the predictions ranked by
their mean probability where a probability volume is given.

Volumes are read block by block (see :mod:`sam_mito.volumes.instances`), twice: a volume larger than
memory is never loaded whole.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sam_mito.errors import SamMitoError
from sam_mito.evaluation.instance_metrics import (
    IOU_THRESHOLDS,
    MATCH_IOU,
    instance_scores,
    match_instances,
    match_rows,
)
from sam_mito.evaluation.metrics import per_image_scores
from sam_mito.files import atomic_file, check_output_file, check_outputs
from sam_mito.results import Result
from sam_mito.volumes.instances import Block, SizeCounter, VolumeLabeler, block_grid
from sam_mito.volumes.reading import open_volume
from sam_mito.volumes.volume import Volume

logger = logging.getLogger(__name__)

#: The JSON report's keys, in order.
SCORE_KEYS = (
    "foreground_iou",
    "foreground_dice",
    "instance_precision",
    "instance_recall",
    "instance_f1",
    "matched_iou",
    "background_iou",
    "overall_iou",
    "mean_segmentation_accuracy",
    "segmentation_accuracy_50",
    "average_precision",
    "average_precision_50",
    "average_precision_75",
    "object_scores",
    "per_threshold",
    "per_slice",
)
#: The columns of the ``--matches`` file.
MATCH_COLUMNS = ("prediction", "truth", "iou", "prediction_voxels", "truth_voxels", "z", "y", "x")


@dataclass
class VolumeScores(Result):
    """A volume's scores (:func:`score_volumes`); ``to_dict()`` is what ``--json`` writes."""

    foreground_iou: float
    foreground_dice: float
    instance_precision: float
    instance_recall: float
    instance_f1: float
    matched_iou: float | None
    background_iou: float
    overall_iou: float
    mean_segmentation_accuracy: float
    segmentation_accuracy_50: float
    average_precision: float
    average_precision_50: float
    average_precision_75: float
    object_scores: str
    per_threshold: list[dict]
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


class ProbabilityReader:
    """Read a probability volume's blocks as float64 in [0, 1]: float in [0, 1], or uint8 0..255 (/ 255)."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        if not (volume.dtype.kind == "f" or volume.dtype == np.uint8):
            raise SamMitoError(
                f"{volume.source}: probabilities of type {volume.dtype}; expected float probabilities in "
                "[0, 1] (as sam-mito predict --probabilities-out writes them) or uint8 0..255"
            )

    def __call__(self, block: Block, where: np.ndarray) -> np.ndarray:
        """The probabilities of block ``block`` at the voxels ``where`` (a mask), checked over the block."""
        raw = self.volume.block(*block)
        if raw.dtype == np.uint8:
            return raw[where] / 255.0
        if raw.size and not (raw.min() >= 0 and raw.max() <= 1):  # NaN fails both
            raise SamMitoError(
                f"{self.volume.source}: probabilities hold values outside [0, 1] (or NaN) in block "
                f"{tuple((s.start, s.stop) for s in block)}; expected probabilities in [0, 1]"
            )
        return raw[where].astype(np.float64)


class PerObject:
    """One value per instance id, merged over blocks by ``merge`` (``np.add``: sums, ``np.minimum``: firsts)."""

    def __init__(self, merge: np.ufunc) -> None:
        self.merge, self._ids, self._values, self._pending = merge, [], [], 0

    def add(self, ids: np.ndarray, values: np.ndarray) -> None:
        """A block's values, one per id of ``ids`` (unique within the block)."""
        self._ids.append(ids.astype(np.uint64, copy=False))
        self._values.append(values)
        self._pending += ids.size
        if self._pending > 1 << 20:
            self._compact()

    def _compact(self) -> None:
        ids, values = np.concatenate(self._ids), np.concatenate(self._values)
        order = np.argsort(ids, kind="stable")
        ids, values = ids[order], values[order]
        starts = np.flatnonzero(np.append(True, ids[1:] != ids[:-1])) if ids.size else np.zeros(0, np.int64)
        merged = self.merge.reduceat(values, starts) if ids.size else values
        self._ids, self._values, self._pending = [ids[starts]], [merged], starts.size

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, values)``: sorted unique ids and their merged values."""
        if not self._ids:
            return np.zeros(0, np.uint64), np.zeros(0)
        self._compact()
        return self._ids[0], self._values[0]


def _first_voxels(
    ids: np.ndarray, block: Block, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Each instance of a block's ``ids`` and the volume-wide flat index of its first voxel in the block.

    C order within a block is C order within the volume, so the first occurrence is the least index.
    """
    where = np.flatnonzero(ids)
    unique, first = np.unique(ids.ravel()[where], return_index=True)
    local = np.unravel_index(where[first], ids.shape)
    coords = tuple(c + s.start for c, s in zip(local, block, strict=True))
    return unique, np.ravel_multi_index(coords, shape).astype(np.int64)


def score_volumes(
    prediction: str | Path,
    truth: str | Path,
    *,
    labels: str | Path | None = None,
    probabilities: str | Path | None = None,
    json_path: str | Path | None = None,
    matches_path: str | Path | None = None,
) -> VolumeScores:
    """Foreground and instance scores of a binary prediction volume against the ground truth.

    Parameters
    ----------
    prediction, truth : str or Path
        Binary masks ({0, 1} or {0, 255}) of the same shape: TIFF stacks, slice folders or zarr.
    labels : str or Path, keyword-only
        Instance labels of the prediction (integer, 0 = background, same shape); by default the
        prediction's 3D connected components.
    probabilities : str or Path, keyword-only
        The prediction's probabilities (same shape): float in [0, 1], as ``sam-mito predict
        --probabilities-out`` writes them, or uint8 0..255 (divided by 255). Each predicted instance is
        scored by its mean probability, which ranks the predictions for average precision; without
        them all scores are equal.
    json_path : str or Path, keyword-only
        Also write the scores here as JSON (atomically; never over an input).
    matches_path : str or Path, keyword-only
        Also write the instances matched at IoU >= :data:`MATCH_IOU`, and those left unmatched, here
        as CSV (atomically; never over an input), one row each with the columns
        :data:`MATCH_COLUMNS` (see :func:`sam_mito.evaluation.instance_metrics.match_rows`; an
        empty cell for a side a row lacks).

    Returns
    -------
    VolumeScores
        The fields :data:`SCORE_KEYS`: ``foreground_iou`` and ``foreground_dice`` pooled over every
        voxel; ``instance_precision``, ``instance_recall``, ``instance_f1`` at IoU >= 0.5;
        ``matched_iou`` (mean IoU of matched pairs, None without any); ``background_iou`` (the
        IoU of the two backgrounds) and ``overall_iou`` (the mean of foreground and background
        IoU, PyTorch Connectomics' "IoU"); ``mean_segmentation_accuracy``,
        ``segmentation_accuracy_50``, ``average_precision``, ``average_precision_50``,
        ``average_precision_75``, ``object_scores`` and ``per_threshold`` as
        :func:`sam_mito.evaluation.instance_metrics.instance_scores` defines them; ``per_slice``,
        one ``{"slice", "iou", "dice", "truth_voxels", "predicted_voxels"}`` per slice (both 1.0
        where truth and prediction are empty).
    """
    volumes = {"prediction": open_volume(prediction), "truth": open_volume(truth)}
    if labels is not None:
        volumes["labels"] = open_volume(labels)
        _check_labels(volumes["labels"])
    if probabilities is not None:
        volumes["probabilities"] = open_volume(probabilities)
        read_probabilities = ProbabilityReader(volumes["probabilities"])
    shape = volumes["prediction"].shape
    for name, volume in volumes.items():
        if volume.shape != shape:
            raise SamMitoError(
                f"{volume.source}: {name} has shape {volume.shape}; expected {shape} like the prediction "
                f"{volumes['prediction'].source}"
            )
    outputs = {"json_path": json_path, "matches_path": matches_path}
    if json_path is not None or matches_path is not None:
        inputs = {"prediction": prediction, "truth": truth, "labels": labels, "probabilities": probabilities}
        check_outputs(outputs, inputs, overwrite=True)  # a report is replaced
        for name, path in outputs.items():
            check_output_file(path, name=name)
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
    sums, truth_first, pred_first = PerObject(np.add), PerObject(np.minimum), PerObject(np.minimum)
    for index, block in tqdm(list(grid), desc="scoring (2/2)", unit="block"):
        true_ids = truth_labeler.labels(index, read_truth(block)).astype(np.uint64)
        if pred_labeler is not None:
            pred_ids = pred_labeler.labels(index, read_pred(block)).astype(np.uint64)
        else:
            pred_ids = volumes["labels"].block(*block).astype(np.uint64)
        both = (true_ids > 0) & (pred_ids > 0)
        pairs.add((true_ids[both] << np.uint64(32)) | pred_ids[both])
        predicted = pred_ids > 0
        truth_sizes.add(true_ids[true_ids > 0])
        pred_sizes.add(pred_ids[predicted])
        if probabilities is not None:
            ids, inverse = np.unique(pred_ids[predicted], return_inverse=True)
            sums.add(
                ids, np.bincount(inverse, weights=read_probabilities(block, predicted), minlength=ids.size)
            )
        if matches_path is not None:
            truth_first.add(*_first_voxels(true_ids, block, shape))
            pred_first.add(*_first_voxels(pred_ids, block, shape))

    pairs, truth_sizes, pred_sizes = pairs.result(), truth_sizes.result(), pred_sizes.result()
    object_scores = sums.result()[1] / np.maximum(pred_sizes[1], 1) if probabilities is not None else None
    found = instance_scores(pairs, truth_sizes, pred_sizes, scores=object_scores)
    logger.info(
        "instances: %d in the truth, %d predicted, %d matched",
        truth_sizes[0].size,
        pred_sizes[0].size,
        found["per_threshold"][0]["true_positives"],
    )
    scores = {**_foreground(counts, voxels=int(np.prod(shape))), **found, "per_slice": _per_slice(counts)}
    scores = VolumeScores(**{key: scores[key] for key in SCORE_KEYS})
    if matches_path is not None:
        matches = match_instances(pairs, truth_sizes, pred_sizes, threshold=MATCH_IOU, scores=object_scores)
        rows = match_rows(
            matches,
            truth_sizes,
            pred_sizes,
            truth_voxels=truth_first.result(),
            pred_voxels=pred_first.result(),
            shape=shape,
        )
        with atomic_file(matches_path) as partial, partial.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=MATCH_COLUMNS)
            writer.writeheader()
            writer.writerows(
                {key: "" if value is None else value for key, value in row.items()} for row in rows
            )
    if json_path is not None:
        with atomic_file(json_path) as partial:
            partial.write_text(json.dumps(scores.to_dict(), indent=1))
    return scores


def _foreground(counts: np.ndarray, *, voxels: int) -> dict:
    intersection, predicted, truth = counts.sum(axis=1)
    union, total = predicted + truth - intersection, predicted + truth
    foreground_iou = float(intersection / union) if union else 1.0
    # the backgrounds: their overlap is everything outside the union, their union everything but the overlap
    background_union = voxels - intersection
    background_iou = float((voxels - union) / background_union) if background_union else 1.0
    return {
        "foreground_iou": foreground_iou,
        "foreground_dice": float(2 * intersection / total) if total else 1.0,
        "background_iou": background_iou,
        "overall_iou": (foreground_iou + background_iou) / 2,
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


def score_table(scores: dict) -> str:
    """The scores as a markdown table (per-slice figures summarised by their mean and minimum)."""
    per_slice_iou = [row["iou"] for row in scores["per_slice"]]
    matched = scores["matched_iou"]
    ranked = "by mean probability" if scores["object_scores"] == "mean_probability" else "all scores equal"
    sweep = f"IoU {IOU_THRESHOLDS[0]}:0.05:{IOU_THRESHOLDS[-1]}"
    rows = [
        ("foreground IoU (voxel-wise, whole volume)", scores["foreground_iou"]),
        ("foreground Dice (voxel-wise, whole volume)", scores["foreground_dice"]),
        ("per-slice IoU, mean / min", f"{np.mean(per_slice_iou):.4f} / {np.min(per_slice_iou):.4f}"),
        ("background IoU (voxel-wise, whole volume)", scores["background_iou"]),
        ("overall IoU (mean of foreground and background IoU)", scores["overall_iou"]),
        ("instance precision (IoU >= 0.5)", scores["instance_precision"]),
        ("instance recall (IoU >= 0.5)", scores["instance_recall"]),
        ("instance F1 (IoU >= 0.5)", scores["instance_f1"]),
        ("mean IoU of matched instances", "n/a" if matched is None else matched),
        (f"mSA (TP / (TP + FP + FN), mean over {sweep})", scores["mean_segmentation_accuracy"]),
        ("SA50 (TP / (TP + FP + FN) at IoU >= 0.5)", scores["segmentation_accuracy_50"]),
        (f"AP (COCO 101-point, mean over {sweep}; {ranked})", scores["average_precision"]),
        ("AP-50 (IoU >= 0.5)", scores["average_precision_50"]),
        ("AP-75 (IoU >= 0.75)", scores["average_precision_75"]),
    ]
    lines = ["| score | value |", "|---|---|"]
    lines += [
        f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |"
        for name, value in rows
    ]
    return "\n".join(lines)
