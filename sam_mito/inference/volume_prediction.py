"""Predict whole volumes into TIFF or OME-Zarr, with instance labels; zarr runs are parallel and resumable.

``sam-mito predict`` comes here. A ``.zarr`` output is an OME-Zarr image (:mod:`sam_mito.volumes.omezarr`)
written slice by slice in place:

- **parallel**: under ``accelerate launch --num_processes N -m sam_mito predict ...`` each process
  takes a contiguous range of slices and writes them straight into the store (chunks are one slice
  deep, so no two processes write the same chunk); the result is byte-identical to one process
  running as many threads as each of them (``accelerate launch`` gives each CPU process the
  physical cores divided by the processes; other thread counts sum in another order, which moves
  float probabilities by about 1e-7).
- **resumable**: a slice counts as complete only once its chunks are written (an empty marker file
  per slice under ``.sam_mito_progress/`` inside the store). Started again with the same command, a
  killed run skips complete slices and ends byte-identical to an uninterrupted one (``overwrite``
  does not restart an unfinished run of the same settings). The run's settings are recorded in the
  group's ``sam_mito`` attribute; a finished output, or one started with other settings, is
  refused without ``overwrite``.
- **3D context** (:mod:`sam_mito.inference.postprocessing`): each slice's probabilities are averaged over a
  z-window of neighbouring slices before they are thresholded, opened and hole-filled; a process
  also predicts the ``z_window // 2`` slices beyond each end of its range (its halo), and a resumed
  run those around the slices it still has to write, so every split gives the same mask. Once every
  slice is written, the first process drops the 3D objects under ``min_size`` voxels in place.
- **instances**: ``labels`` are the 3D connected components of the final mask
  (:mod:`sam_mito.volumes.instances`), computed by the first process once every slice exists.

TIFF outputs are single-process and atomic: the mask appears only once finished (size-filtered
through a hidden unfiltered copy beside it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from tqdm.auto import tqdm

from sam_mito.errors import SamMitoError
from sam_mito.files import atomic_file, check_output_file, check_outputs
from sam_mito.inference.pipeline import PredictionSummary, finished_slices, read_boxes
from sam_mito.inference.postprocessing import PostProcessing, drop_small_objects, size_limits
from sam_mito.inference.segmenter import Segmenter
from sam_mito.version import __version__
from sam_mito.volumes.labelling import label_mask
from sam_mito.volumes.omezarr import check_voxel_size, create_image, open_image, set_voxel_size
from sam_mito.volumes.reading import is_zarr, open_volume
from sam_mito.volumes.volume import Volume

logger = logging.getLogger(__name__)

#: Folder inside a zarr output holding one empty marker file per complete slice.
PROGRESS_DIR = ".sam_mito_progress"
#: Group attribute recording how a zarr output was made and whether it is finished.
RUN_ATTR = "sam_mito"


def _processes(segmenter: Segmenter) -> tuple[int, int, Callable[[], None]]:
    """``(rank, world size, barrier)``: accelerate's state under ``accelerate launch``, else one process.

    Under several processes the model moves to this process's device (its GPU, or the CPU).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, lambda: None
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo across CPU processes
    segmenter.model.to(state.device)
    return state.process_index, state.num_processes, state.wait_for_everyone


def predict_volume(
    segmenter: Segmenter,
    input_path: str | Path,
    output_path: str | Path,
    *,
    labels_path: str | Path | None = None,
    probabilities_path: str | Path | None = None,
    boxes_path: str | Path | None = None,
    post: PostProcessing | None = None,
    overwrite: bool = False,
    voxel_size: Sequence[float] | None = None,
) -> PredictionSummary:
    """Segment an image, stack, slice folder or zarr into a 0/255 ``uint8`` mask of the same shape.

    Parameters
    ----------
    segmenter : Segmenter
        The model, prompt mode and tiling.
    input_path : str or Path
        TIFF/PNG image, multi-page TIFF, slice folder, or ``.zarr`` (OME-Zarr image or array).
    output_path : str or Path
        Mask: ``.zarr`` (OME-Zarr, parallel and resumable) or TIFF (single process, atomic).
    labels_path : str or Path, keyword-only
        Also write instance labels (``uint32``, 0 = background): 3D connected components of the
        final mask, ``.zarr`` or TIFF.
    probabilities_path : str or Path, keyword-only
        Also write the float32 probabilities that are thresholded (after the z-window): ``.zarr``
        with a zarr output, TIFF with a TIFF one.
    boxes_path : str or Path, keyword-only
        Boxes JSON for ``boxes`` mode (see :func:`sam_mito.inference.segmenter.read_boxes`).
    post : PostProcessing, keyword-only
        Threshold, z-window, opening, hole filling and size filter; default: the segmenter's
        (``PostProcessing()`` unless it was loaded with other settings). The same steps as
        :func:`sam_mito.inference.pipeline.segment_volume`, which returns arrays instead.
    overwrite : bool, keyword-only
        Replace a finished zarr output (or one started with other settings, or not made by
        sam-mito), and existing labels; an unfinished run of the same settings still resumes.
    voxel_size : sequence of float, keyword-only
        ``(z, y, x)`` voxel size in nanometres, written into every ``.zarr`` output (mask, labels,
        probabilities) once it is finished, as its NGFF scale with the unit ``nanometer``
        (``sam-mito measure`` reads it back); TIFF outputs do not record it.

    Returns
    -------
    PredictionSummary
        What was predicted, filtered and labelled (this process's counts), and its ``warnings``:
        for one, that the size filter removed every object (the mask is empty).
    """
    post = post or segmenter.post
    rank, world, barrier = _processes(segmenter)
    volume = open_volume(input_path)
    post = post.for_volume(volume)
    sizes = check_voxel_size(voxel_size) if voxel_size is not None else None
    named = {"output_path": output_path, "probabilities_path": probabilities_path, "labels_path": labels_path}
    inputs = {"input_path": input_path, "boxes_path": boxes_path}
    check_outputs(named, inputs, overwrite=overwrite, resumable=True)  # a zarr run may resume
    outputs = [Path(p) for p in named.values() if p is not None]
    check_output_formats(
        volume,
        {"mask": "output_path", "labels": "labels_path", "probabilities": "probabilities_path"},
        mask=output_path,
        labels=labels_path,
        probabilities=probabilities_path,
    )
    if not is_zarr(output_path):
        if world > 1:
            raise SamMitoError(
                f"{output_path}: TIFF output is single-process; write a .zarr to use several processes"
            )
    boxes = read_boxes(boxes_path, volume.shape) if boxes_path is not None else None
    if segmenter.mode == "boxes" and boxes is None:
        raise SamMitoError("mode 'boxes' needs a boxes JSON file (--boxes)")
    if not is_zarr(output_path):
        summary = _predict_tiff(segmenter, volume, output_path, probabilities_path, boxes, post)
        if labels_path is not None:
            summary.record(
                label_mask(
                    open_volume(output_path), labels_path, method=post.instances, seed_height=post.seed_height
                )
            )
        _record_voxel_size(sizes, labels_path)
        return summary
    settings = _settings(segmenter, volume, input_path, outputs, boxes_path, post)
    resume = _existing_run(Path(output_path), settings, overwrite=overwrite)
    if not resume:
        _check_labels_target(labels_path, overwrite=overwrite)
        if probabilities_path is not None and Path(probabilities_path).exists() and not overwrite:
            raise SamMitoError(f"{probabilities_path}: exists (pass --overwrite to replace it)")
    barrier()  # every process has checked the existing output before the first one replaces it
    if rank == 0 and not resume:
        _create(volume.shape, output_path, probabilities_path, labels_path, settings)
    barrier()
    masks = open_image(output_path)[1]
    probabilities = open_image(probabilities_path)[1] if probabilities_path is not None else None
    progress = Path(output_path) / PROGRESS_DIR
    done = {int(p.name) for p in progress.iterdir()}
    depth = volume.shape[0]
    assigned = range(rank * depth // world, (rank + 1) * depth // world)
    mine = [z for z in assigned if z not in done]
    summary = PredictionSummary(shape=volume.shape[1:] if volume.single_image else volume.shape)
    for z, probability, mask in finished_slices(segmenter, volume, mine, boxes, post, summary, rank=rank):
        masks[z] = mask
        if probabilities is not None:
            probabilities[z] = probability
        (progress / f"{z:06d}").touch()  # only now is the slice complete
    summary.encoder_passes, summary.slices_skipped = segmenter.encoder_passes, len(assigned) - len(mine)
    summary.process, summary.processes = rank, world
    barrier()
    if rank == 0:
        missing = sorted(set(range(depth)) - {int(p.name) for p in progress.iterdir()})
        if missing:
            raise SamMitoError(
                f"{output_path}: slices {missing[:5]} are not complete; run the same command again"
            )
        if post.min_size:  # in place; a kill here is repaired by running it again (it only removes)
            written = open_volume(output_path)
            limits = size_limits(written, post)
            removed, blocks = drop_small_objects(written, limits.min_size, min_area=limits.min_area)
            for block, mask, changed in tqdm(blocks, desc="dropping small objects", unit="block"):
                if changed:
                    masks[block] = mask
            summary.record_filter(removed, limits, volume)
        if labels_path is not None:
            summary.record(
                label_mask(
                    open_volume(output_path), labels_path, method=post.instances, seed_height=post.seed_height
                )
            )
        _record_voxel_size(sizes, output_path, probabilities_path, labels_path)
        group = open_image(output_path)[0]
        group.attrs[RUN_ATTR] = {**settings, "complete": True}
        shutil.rmtree(progress)
    return summary


#: File outputs by what they can hold: a PNG holds one 2D 8-bit image (a mask, not labels or probabilities).
TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIX = ".png"


def check_output_formats(
    volume: Volume, names: dict[str, str], *, mask=None, labels=None, probabilities=None
) -> None:
    """Refuse an output whose name promises a format it cannot hold, or a file path that cannot be written.

    The mask may be ``.zarr``, TIFF, or PNG for a single 2D image; labels and probabilities
    ``.zarr`` or TIFF (a PNG holds neither ``uint32`` labels nor ``float32`` probabilities), and
    the probabilities are ``.zarr`` exactly when the mask is.

    Parameters
    ----------
    volume : Volume
        The input to predict.
    names : dict of str to str
        What the caller calls each output (``mask``, ``labels``, ``probabilities``): a parameter
        name, or a flag on the command line.
    mask, labels, probabilities : str or Path, keyword-only
        The outputs (None: not written).
    """
    if probabilities is not None and is_zarr(probabilities) != is_zarr(mask):
        raise SamMitoError(
            f"{probabilities}: {names['probabilities']} must be .zarr exactly when {names['mask']} is "
            f"({mask}): the two are written together"
        )
    for kind, path in (("mask", mask), ("labels", labels), ("probabilities", probabilities)):
        if path is None or is_zarr(path):
            continue
        check_output_file(path, name=names[kind])
        suffix = Path(path).suffix.lower()
        allowed = TIFF_SUFFIXES + ((PNG_SUFFIX,) if kind == "mask" else ())
        if suffix not in allowed:
            raise SamMitoError(
                f"{path}: {names[kind]} must end in .zarr or {' / '.join(allowed)}; {suffix or 'no suffix'} "
                "is not a format sam-mito writes"
            )
        if suffix == PNG_SUFFIX and not volume.single_image:
            raise SamMitoError(
                f"{path}: {names[kind]} is a PNG, which holds one 2D image, but {volume.source} is a stack of "
                f"{volume.shape[0]} slices; write .tif or .zarr"
            )


def _record_voxel_size(sizes: tuple[float, ...] | None, *paths: str | Path | None) -> None:
    """Write the voxel size into each finished ``.zarr`` of ``paths`` (TIFF outputs cannot hold it)."""
    if sizes is None:
        return
    zarrs = [path for path in paths if path is not None and is_zarr(path)]
    for path in zarrs:
        set_voxel_size(path, sizes)
    if not zarrs:
        logger.warning("voxel size %s nm not recorded: only .zarr outputs hold it", list(sizes))


def _check_labels_target(labels_path: str | Path | None, *, overwrite: bool) -> None:
    if labels_path is not None and Path(labels_path).exists() and not overwrite:
        raise SamMitoError(f"{labels_path}: exists (pass --overwrite to replace it)")


def _settings(segmenter, volume, input_path, outputs, boxes_path, post) -> dict:
    """What a zarr output records about its run; a resumed run must match it exactly."""
    return {
        "sam_mito_version": __version__,
        "model": str(getattr(segmenter.model.config, "_name_or_path", "")),
        "input": str(Path(input_path).resolve()),
        "shape": list(volume.shape),
        "outputs": [str(p.resolve()) for p in outputs],
        **segmenter.settings(),
        "normalization": segmenter.normalization,
        "boxes": str(Path(boxes_path).resolve()) if boxes_path is not None else None,
        **post.settings(),
    }


def _existing_run(output: Path, settings: dict, *, overwrite: bool) -> bool:
    """Whether ``output`` is an unfinished run of these ``settings`` to resume (with or without
    ``overwrite``); anything else there is refused unless ``overwrite``, which starts afresh."""
    if not output.exists():
        return False
    try:
        recorded = dict(open_image(output, mode="r")[0].attrs).get(RUN_ATTR)
    except (OSError, ValueError, KeyError):
        recorded = None
    if recorded is None:
        problem = "exists and is not a sam-mito prediction (pass --overwrite to replace it)"
    elif recorded.get("complete"):
        problem = "prediction is finished (pass --overwrite to predict it again)"
    elif changed := sorted(key for key in settings if recorded.get(key) != settings[key]):
        problem = (
            f"unfinished prediction started with other settings ({', '.join(changed)}); "
            "run the same command to resume it, or pass --overwrite to start again"
        )
    else:
        logger.info("resuming %s", output)
        return True
    if overwrite:
        return False
    raise SamMitoError(f"{output}: {problem}")


def _create(shape, output_path, probabilities_path, labels_path, settings) -> None:
    """Start a run afresh: replace the outputs (labels, written last, are removed until then)."""
    for path in (output_path, probabilities_path, labels_path):
        if path is not None and Path(path).is_dir():
            shutil.rmtree(path)
        elif path is not None and Path(path).exists():
            Path(path).unlink()
    attrs = {RUN_ATTR: {**settings, "complete": False}}
    create_image(output_path, shape, np.uint8, attrs=attrs)
    (Path(output_path) / PROGRESS_DIR).mkdir()
    if probabilities_path is not None:
        create_image(probabilities_path, shape, np.float32, attrs=attrs)


def _predict_tiff(segmenter, volume, output_path, probabilities_path, boxes, post) -> dict:
    """One process writes the mask (and probabilities) as TIFF, atomically: nothing until finished."""
    summary = PredictionSummary(shape=volume.shape[1:] if volume.single_image else volume.shape)
    with contextlib.ExitStack() as files:
        partial = files.enter_context(atomic_file(output_path))
        unfiltered = partial
        if post.min_size:
            unfiltered = partial.with_name(f"{partial.name}.unfiltered.tif")
            files.callback(unfiltered.unlink, missing_ok=True)
        if probabilities_path is not None:
            probabilities_partial = files.enter_context(atomic_file(probabilities_path))
        with contextlib.ExitStack() as writers:  # closed before the size filter reads the mask back
            masks = writers.enter_context(tifffile.TiffWriter(unfiltered))
            if probabilities_path is not None:
                probabilities = writers.enter_context(tifffile.TiffWriter(probabilities_partial))
            slices = range(volume.shape[0])
            for _, probability, mask in finished_slices(segmenter, volume, slices, boxes, post, summary):
                masks.write(mask, contiguous=True)
                if probabilities_path is not None:
                    probabilities.write(probability, contiguous=True)
        if post.min_size:
            written = open_volume(unfiltered)
            limits = size_limits(written, post)
            removed, blocks = drop_small_objects(written, limits.min_size, min_area=limits.min_area)
            with tifffile.TiffWriter(partial) as filtered:
                for _, mask, _ in blocks:
                    for page in mask:
                        filtered.write(page, contiguous=True)
            summary.record_filter(removed, limits, volume)
        if Path(output_path).suffix.lower() == PNG_SUFFIX:  # a single image: the page, as a real PNG
            Image.fromarray(tifffile.imread(partial)).save(partial, format="PNG")
    logger.info("wrote %s %s (%d encoder passes)", output_path, summary.shape, segmenter.encoder_passes)
    summary.encoder_passes = segmenter.encoder_passes
    return summary
