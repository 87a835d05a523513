"""One prediction pipeline for Python and the command line: slices in, probabilities, mask and labels out.

:func:`segment_volume` runs a :class:`~sam_mito.inference.segmenter.Segmenter` over an image or a
stack in memory; :func:`sam_mito.inference.volume_prediction.predict_volume` (``sam-mito
predict``) runs the same steps and writes files. The steps, in order: each slice's tiled
probabilities, the z-window over neighbouring slices, the per-slice clean-up (threshold, opening,
hole filling), the size filter (3D objects in a stack, 2D in an image), then 3D connected
components as instance labels. The same stack and settings give byte-identical masks and labels on
both paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from sam_mito.errors import SamMitoError
from sam_mito.inference.postprocessing import (
    PostProcessing,
    SizeLimits,
    clean_slice,
    drop_small_objects,
    empty_mask_warnings,
    size_limits,
)
from sam_mito.inference.zcontext import smooth_slices, window_slices
from sam_mito.models.decoding import Box
from sam_mito.results import Result
from sam_mito.volumes.labelling import label_array
from sam_mito.volumes.reading import open_volume
from sam_mito.volumes.volume import Volume

if TYPE_CHECKING:  # segmenter.py imports this module
    from sam_mito.inference.segmenter import Segmenter


@dataclass
class PredictionSummary(Result):
    """What a prediction did; ``to_dict()`` gives the keys the JSON and the CLI have always used.

    Attributes
    ----------
    shape : tuple of int
        The mask's shape: ``(H, W)`` for an image, ``(Z, H, W)`` for a stack.
    encoder_passes : int
        Tiles encoded (by this process).
    slices_predicted, slices_skipped, halo_slices : int
        Slices written, found complete by a resumed run, and predicted again for the z-window only.
    postprocessing : dict
        The settings applied (:meth:`PostProcessing.settings`).
    objects_removed, objects_kept : int or None
        By the size filter; None when it was off (or on another process).
    size_limits : dict or None
        The limits it applied (:class:`SizeLimits`: ``min_size``, ``min_area``, the mask's
        ``continuity`` and the ``scale`` the settings' limits were multiplied by).
    instances : int or None
        Instance labels written; None without labels.
    instance_sizes : dict or None
        Voxel quantiles ``p0``..``p100`` of the instances.
    components, components_split, components_too_large : int or None
        ``watershed`` instances only: connected objects, those split, those too large to split.
    process, processes : int
        This process's rank and the number of processes (1 outside ``accelerate launch``).
    warnings : list of str
        What the caller should be told, each naming the flags that change it (also logged):
        today, that the size filter removed every object (:func:`empty_mask_warnings`).
    """

    shape: tuple[int, ...]
    encoder_passes: int = 0
    slices_predicted: int = 0
    slices_skipped: int = 0
    halo_slices: int = 0
    postprocessing: dict = field(default_factory=dict)
    objects_removed: int | None = None
    objects_kept: int | None = None
    size_limits: dict | None = None
    instances: int | None = None
    instance_sizes: dict | None = None
    components: int | None = None
    components_split: int | None = None
    components_too_large: int | None = None
    process: int = 0
    processes: int = 1
    warnings: list[str] = field(default_factory=list)

    def record(self, values: dict) -> None:
        """Set the fields named in ``values`` (the size filter's or the labelling's counts)."""
        for key, value in values.items():
            setattr(self, key, value)

    def record_filter(self, removed: dict, limits: SizeLimits, volume: Volume) -> None:
        """Record the size filter's counts and limits and, if it removed every object, the warning that says so."""
        self.record(removed)
        self.size_limits = asdict(limits)
        self.warnings += empty_mask_warnings(removed, limits, len(volume), single_image=volume.single_image)

    def to_dict(self) -> dict:
        """The summary as JSON values; fields that do not apply (None) are left out."""
        values = {key: value for key, value in asdict(self).items() if value is not None}
        return {**values, "shape": list(self.shape)}


@dataclass
class Segmentation:
    """The result of :func:`segment_volume`.

    Attributes
    ----------
    mask : numpy.ndarray
        ``uint8``, 0 or 255, the input's shape.
    labels : numpy.ndarray or None
        ``uint32`` instance labels of ``mask`` by ``post.instances`` (0 = background).
    probabilities : numpy.ndarray or None
        ``float32`` probabilities that were thresholded (after the z-window), when asked for.
    summary : PredictionSummary
    """

    mask: np.ndarray
    labels: np.ndarray | None
    probabilities: np.ndarray | None
    summary: PredictionSummary


def segment_volume(
    segmenter: Segmenter,
    volume: np.ndarray | str | Path | Volume,
    *,
    boxes: list[Box] | dict[int, list[Box]] | str | Path | None = None,
    post: PostProcessing | None = None,
    labels: bool = True,
    probabilities: bool = False,
) -> Segmentation:
    """Segment an image or a stack in memory, exactly as ``sam-mito predict`` does on files.

    Parameters
    ----------
    segmenter : Segmenter
        The model, prompt mode and tiling.
    volume : numpy.ndarray, str, Path or Volume
        A ``(H, W)`` image or ``(Z, H, W)`` stack, or anything :func:`sam_mito.open_volume` opens.
    boxes : list, dict, str or Path, keyword-only
        For ``boxes`` mode: boxes ``[x0, y0, x1, y1]`` used on every slice, a dict of slice index
        to boxes, or a boxes JSON file (:func:`read_boxes`).
    post : PostProcessing, keyword-only
        Default: the segmenter's (``PostProcessing()`` unless it was loaded with other settings).
    labels, probabilities : bool, keyword-only
        Also return instance labels (default) and the probabilities.

    Returns
    -------
    Segmentation
    """
    volume = _as_volume(volume)
    post = (post or segmenter.post).for_volume(volume)
    per_slice = _per_slice_boxes(boxes, volume.shape)
    if segmenter.mode == "boxes" and per_slice is None:
        raise SamMitoError(
            "mode 'boxes' needs boxes: pass boxes=[[x0, y0, x1, y1], ...] or a boxes JSON file"
        )
    mask = np.empty(volume.shape, np.uint8)
    kept = np.empty(volume.shape, np.float32) if probabilities else None
    summary = PredictionSummary(shape=volume.shape[1:] if volume.single_image else volume.shape)
    for z, probability, cleaned in finished_slices(
        segmenter, volume, range(volume.shape[0]), per_slice, post, summary
    ):
        mask[z] = cleaned
        if kept is not None:
            kept[z] = probability
    if post.min_size:
        unfiltered = Volume.from_array(mask)
        limits = size_limits(unfiltered, post)
        removed, blocks = drop_small_objects(unfiltered, limits.min_size, min_area=limits.min_area)
        for block, filtered, changed in blocks:
            if changed:
                mask[block] = filtered
        summary.record_filter(removed, limits, volume)
    instances = None
    if labels:
        instances, labelled = label_array(
            Volume.from_array(mask), method=post.instances, seed_height=post.seed_height
        )
        summary.record(labelled)
    summary.encoder_passes = segmenter.encoder_passes
    squeeze = (lambda a: a[0]) if volume.single_image else (lambda a: a)
    return Segmentation(
        mask=squeeze(mask),
        labels=None if instances is None else squeeze(instances),
        probabilities=None if kept is None else squeeze(kept),
        summary=summary,
    )


def _as_volume(volume) -> Volume:
    if isinstance(volume, Volume):
        return volume
    if isinstance(volume, str | Path):
        return open_volume(volume)
    array = np.asarray(volume)
    if array.ndim not in (2, 3):
        raise SamMitoError(f"image has shape {array.shape}; expected (H, W) or (slices, H, W)")
    return Volume.from_array(array)


def _per_slice_boxes(boxes, shape: tuple[int, int, int]) -> dict[int, list[Box]] | None:
    if boxes is None:
        return None
    if isinstance(boxes, str | Path):
        return read_boxes(boxes, shape)
    if isinstance(boxes, dict):
        return {int(z): list(value) for z, value in boxes.items()}
    return {z: list(boxes) for z in range(shape[0])}


def read_boxes(path: str | Path, shape: tuple[int, ...]) -> dict[int, list[Box]]:
    """Read a boxes JSON file and check every box lies inside the ``(Z, H, W)`` volume.

    The file holds either a list of ``[x0, y0, x1, y1]`` boxes (used on every slice) or an object
    mapping slice indices to such lists (``{"0": [[10, 12, 80, 90]], "7": [...]}``); coordinates
    are pixels of the slice, inclusive.
    """
    depth, height, width = shape
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SamMitoError(f"{path}: cannot read boxes JSON ({err})") from err
    if isinstance(data, list):
        data = {str(z): data for z in range(depth)}
    if not isinstance(data, dict):
        raise SamMitoError(f"{path}: expected a list of boxes or an object of slice index -> boxes")
    per_slice = {}
    for key, boxes in data.items():
        if not (str(key).isdigit() and int(key) < depth):
            raise SamMitoError(f"{path}: slice key '{key}' is not a slice index in 0..{depth - 1}")
        if not isinstance(boxes, list):
            raise SamMitoError(f"{path}: slice {key}: expected a list of [x0, y0, x1, y1] boxes")
        for box in boxes:
            if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
                raise SamMitoError(f"{path}: slice {key}: box {box!r} is not [x0, y0, x1, y1]")
            x0, y0, x1, y1 = box
            if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
                raise SamMitoError(
                    f"{path}: slice {key}: box {box} is outside the {width}x{height} image "
                    "(expected 0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height)"
                )
        per_slice[int(key)] = boxes
    return per_slice


def finished_slices(
    segmenter: Segmenter,
    volume: Volume,
    targets: list[int] | range,
    boxes: dict | None,
    post: PostProcessing,
    summary: PredictionSummary,
    *,
    rank: int = 0,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(z, z-smoothed probability, cleaned 0/255 mask)`` of the slices ``targets``, in order.

    The slices within ``post.z_window // 2`` of a target are predicted too (the halo); ``summary``
    records ``slices_predicted``, ``halo_slices`` and ``postprocessing``.
    """
    depth = volume.shape[0]
    needed = window_slices(targets, depth, post.z_window)
    summary.slices_predicted, summary.halo_slices = len(targets), len(needed) - len(targets)
    summary.postprocessing = post.settings()
    slices = volume.slices(segmenter.normalization, indices=needed)
    progress = tqdm(slices, total=len(needed), desc=f"predicting (process {rank})", unit="slice")
    raw = (
        (z, segmenter.probabilities(image, boxes.get(z, []) if boxes else None))
        for z, image in zip(needed, progress, strict=True)
    )
    smoothed = smooth_slices(raw, targets, depth=depth, window=post.z_window, weighting=post.z_weighting)
    for z, probability in smoothed:
        yield z, probability, clean_slice(probability, post)
