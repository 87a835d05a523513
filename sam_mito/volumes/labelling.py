"""Instance labels of a mask volume, written to OME-Zarr or TIFF or kept in memory, by one of two methods.

- ``components``: the 3D connected components (:mod:`sam_mito.volumes.instances`); touching
  objects are one instance.
- ``watershed``: each component split by a seeded watershed of its distance transform
  (:mod:`sam_mito.volumes.watershed`); touching mitochondria become separate instances.

Both stream the mask block by block and give the same labels however the volume is chunked.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from tqdm.auto import tqdm

from sam_mito.defaults import DEFAULT_INSTANCES, DEFAULT_SEED_HEIGHT, INSTANCE_METHODS
from sam_mito.errors import SamMitoError
from sam_mito.files import atomic_directory, atomic_file
from sam_mito.volumes.instances import BlockGrid, SizeCounter, block_grid, label_blocks, size_quantiles
from sam_mito.volumes.omezarr import create_image
from sam_mito.volumes.reading import is_zarr
from sam_mito.volumes.volume import Volume
from sam_mito.volumes.watershed import split_components

logger = logging.getLogger(__name__)


def check_method(method: str, seed_height: float) -> None:
    """Raise :class:`SamMitoError` unless ``method`` is one of :data:`INSTANCE_METHODS` and ``seed_height`` > 0."""
    if method not in INSTANCE_METHODS:
        raise SamMitoError(f"instances {method!r}: expected one of {list(INSTANCE_METHODS)}")
    if isinstance(seed_height, bool) or not isinstance(seed_height, int | float) or not seed_height > 0:
        raise SamMitoError(f"seed_height {seed_height!r}: expected a number of voxels > 0")


def label_mask(
    mask: Volume,
    labels_path: str | Path,
    *,
    method: str = DEFAULT_INSTANCES,
    seed_height: float = DEFAULT_SEED_HEIGHT,
) -> dict:
    """Write the instances of a 0/255 (or 0/1) mask volume as ``uint32`` labels.

    Parameters
    ----------
    mask : Volume
        The binary mask, read block by block (twice; three times for ``watershed``).
    labels_path : str or Path
        ``.zarr`` (OME-Zarr marked ``image-label``) or TIFF; written atomically.
    method : str, keyword-only
        ``components`` or ``watershed`` (see the module docstring).
    seed_height : float, keyword-only
        ``watershed`` only: h of the h-maxima seeds, in voxels
        (:func:`sam_mito.volumes.watershed.split_component`).

    Returns
    -------
    dict
        ``instances`` (count) and ``instance_sizes`` (voxel quantiles); for ``watershed`` also
        ``components``, ``components_split`` and ``components_too_large``.
    """
    check_method(method, seed_height)
    target = Path(labels_path)
    grid = block_grid(mask.shape, mask.chunks if is_zarr(target) else None)
    with contextlib.ExitStack() as stack:
        if is_zarr(target):
            staging = stack.enter_context(atomic_directory(target, overwrite=True))
            name = target.name.removesuffix(".zarr")  # not the staging folder's
            array = create_image(staging, mask.shape, np.uint32, name=name, labels=True)

            def write(block, labels):
                array[block] = labels
        else:
            writer = stack.enter_context(tifffile.TiffWriter(stack.enter_context(atomic_file(target))))

            def write(block, labels):
                for page in labels:
                    writer.write(page, contiguous=True)

        summary = _label(mask, grid, write, method, seed_height)
    logger.info("wrote %s: %d instances", target, summary["instances"])
    return summary


def label_array(
    mask: Volume, *, method: str = DEFAULT_INSTANCES, seed_height: float = DEFAULT_SEED_HEIGHT
) -> tuple[np.ndarray, dict]:
    """The labels :func:`label_mask` writes to a TIFF, as a ``uint32`` array in memory.

    Returns
    -------
    labels : numpy.ndarray
        ``uint32`` of ``mask.shape``, 0 = background.
    summary : dict
        As :func:`label_mask` returns.
    """
    check_method(method, seed_height)
    labels = np.zeros(mask.shape, np.uint32)

    def write(block, values):
        labels[block] = values

    return labels, _label(mask, block_grid(mask.shape, None), write, method, seed_height)


def _label(mask: Volume, grid: BlockGrid, write: Callable, method: str, seed_height: float) -> dict:
    """Label ``mask`` over ``grid``, handing the labels to ``write(block or z-slab, labels)`` in z order."""
    if method == "watershed":
        summary = split_components(mask, grid, write, seed_height=seed_height)
        sizes = summary.pop("sizes")[1:]
        return {**summary, "instance_sizes": size_quantiles(sizes)}
    counter = SizeCounter()
    labeler, blocks = label_blocks(grid, lambda block: mask.block(*block) > 0)
    for block, labels in tqdm(blocks, total=int(np.prod(grid.counts)), desc="labelling", unit="block"):
        write(block, labels)
        counter.add(labels[labels > 0])
    return {"instances": labeler.count, "instance_sizes": size_quantiles(counter.result()[1])}
