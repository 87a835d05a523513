"""Touching objects split apart: a seeded watershed of each connected component, streamed in z.

Connected components merge mitochondria that touch. :func:`split_components` splits each
component (6-connected, as :mod:`sam_mito.volumes.instances` finds them) on its own:

1. the component is cut out by its bounding box, padded by one background voxel on every side;
2. its Euclidean distance transform (``scipy.ndimage.distance_transform_edt``) peaks at the centre
   of each lobe; seeds are its h-maxima (``skimage.morphology.h_maxima``): maxima standing at least
   ``seed_height`` voxels above the saddle joining them, so the narrowing between two touching
   mitochondria separates them while the small bumps of one surface do not;
3. the component is flooded from the seeds (``skimage.segmentation.watershed`` of the negated
   distance, inside the component); one seed leaves it whole.

Because each component is split from its own voxels alone, the result does not depend on how the
volume is cut into blocks or processes. Instance ids are numbered component by component, in
raster order (z, y, x) of each component's first voxel, and within a component in raster order of
its parts' first voxels, so the same mask always gives the same labels.

Memory: the mask is read block by block three times (label, bounding boxes, split); the split holds
whole slices, from the first slice of the oldest component not yet split to the last slice of the
one being split — the slices a chain of overlapping components spans, at most the whole depth —
as ``uint32`` labels twice (the components and the output), plus one component's padded crop at
about 40 bytes a voxel. A component whose bounding box has more than :data:`MAX_SPLIT_VOXELS`
voxels is kept whole (and counted in the summary) rather than exhaust memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from sam_mito.volumes.instances import Block, BlockGrid, label_blocks
from sam_mito.volumes.volume import Volume

logger = logging.getLogger(__name__)

#: Largest bounding box (voxels) of a component that is split; a larger one is kept whole.
MAX_SPLIT_VOXELS = 1 << 26


def split_component(component: np.ndarray, *, seed_height: float, sampling=None) -> tuple[np.ndarray, int]:
    """Split one connected object by a seeded watershed of its distance transform.

    Parameters
    ----------
    component : numpy.ndarray of bool
        The object, ``(Z, Y, X)`` or ``(Y, X)``; cut out by its bounding box or larger.
    seed_height : float, keyword-only
        h of the h-maxima seeds, in voxels of distance (in units of ``sampling`` if given).
    sampling : sequence of float, keyword-only
        Voxel spacing per axis for the distance transform (default isotropic 1).

    Returns
    -------
    labels : numpy.ndarray
        ``uint32`` of ``component``'s shape: 1..n inside the object, numbered in raster order of
        each part's first voxel, 0 outside.
    n : int
        Parts (1 when no second seed stands ``seed_height`` above the saddle).

    Examples
    --------
    Two 5x5 squares joined by a 1-pixel bridge are two parts; one square is one:

    >>> import numpy as np
    >>> pair = np.zeros((7, 13), bool)
    >>> pair[1:6, 1:6] = pair[1:6, 7:12] = True
    >>> pair[3, 6] = True
    >>> split_component(pair, seed_height=1)[1]
    2
    >>> split_component(pair[:, :7], seed_height=1)[1]
    1
    """
    from skimage.morphology import local_maxima, reconstruction
    from skimage.segmentation import watershed

    padded = np.pad(component, 1)
    distance = ndimage.distance_transform_edt(padded, sampling=sampling)
    lowered = reconstruction(np.maximum(distance - seed_height, 0), distance, method="dilation")
    seeds = local_maxima(lowered, connectivity=padded.ndim, allow_borders=False) & padded
    structure = ndimage.generate_binary_structure(padded.ndim, padded.ndim)
    markers, n = ndimage.label(seeds, structure=structure)
    inner = tuple(slice(1, -1) for _ in range(padded.ndim))
    if n <= 1:
        return component.astype(np.uint32), int(component.any())
    flooded = watershed(-distance, markers, mask=padded)[inner]
    return _raster_order(flooded), n


def _raster_order(labels: np.ndarray) -> np.ndarray:
    """``labels`` renumbered 1..n by the raster position of each label's first voxel (0 kept)."""
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    order = np.argsort(first[ids > 0])
    mapping = np.zeros(int(ids.max()) + 1, np.uint32)
    mapping[ids[ids > 0][order]] = np.arange(1, order.size + 1, dtype=np.uint32)
    return mapping[labels]


def split_components(
    mask: Volume,
    grid: BlockGrid,
    write: Callable[[slice, np.ndarray], None],
    *,
    seed_height: float,
    sampling=None,
) -> dict:
    """Label a 0/255 (or 0/1) mask volume's objects, touching ones split apart, slab by slab in z.

    Parameters
    ----------
    mask : Volume
        The binary mask, read block by block, three times.
    grid : BlockGrid
        Its blocks (:func:`sam_mito.volumes.instances.block_grid`).
    write : callable
        ``write(zs, labels)``: each z-slab of ``uint32`` instance labels (whole slices, in order).
    seed_height : float, keyword-only
        See :func:`split_component`.
    sampling : sequence of float, keyword-only
        Voxel spacing ``(z, y, x)`` for the distance transform (default isotropic).

    Returns
    -------
    dict
        ``instances`` (count), ``components`` (connected components before splitting),
        ``components_split`` and ``components_too_large`` (kept whole, bounding box over
        :data:`MAX_SPLIT_VOXELS`), and ``sizes`` (voxels of each instance id, ``sizes[0]`` 0).
    """

    def read(block: Block) -> np.ndarray:
        return mask.block(*block) > 0

    labeler, labelled = label_blocks(grid, read)
    boxes = _bounding_boxes(labelled, labeler.count, mask.shape)
    order = np.argsort(boxes[1:, 6], kind="stable") + 1  # components by first voxel: z-min order
    summary = {"components": labeler.count, "components_split": 0, "components_too_large": 0}
    slabs = _component_slabs(grid, labeler, read)
    window = _Window(mask.shape[1:])
    sizes, next_id = [np.zeros(1, np.int64)], 1
    for component in tqdm(order, desc="splitting touching objects", unit="object"):
        z0, y0, x0, z1, y1, x1 = (int(v) for v in boxes[component, :6])
        window.flush_below(z0, write)
        window.extend_to(z1, slabs)
        crop = window.components[z0 - window.start : z1 - window.start, y0:y1, x0:x1] == component
        if crop.size > MAX_SPLIT_VOXELS:
            parts, n = crop.astype(np.uint32), 1
            summary["components_too_large"] += 1
        else:
            parts, n = split_component(crop, seed_height=seed_height, sampling=sampling)
            summary["components_split"] += n > 1
        out = window.labels[z0 - window.start : z1 - window.start, y0:y1, x0:x1]
        out[crop] = parts[crop] + np.uint32(next_id - 1)
        sizes.append(np.bincount(parts[crop], minlength=n + 1)[1:])
        next_id += n
    window.flush_below(mask.shape[0], write)
    window.extend_to(mask.shape[0], slabs)  # slabs after the last object: background
    window.flush_below(mask.shape[0], write)
    summary["instances"] = next_id - 1
    summary["sizes"] = np.concatenate(sizes)
    if summary["components_too_large"]:
        logger.warning(
            "%d objects have a bounding box over %d voxels and were kept whole, not split",
            summary["components_too_large"],
            MAX_SPLIT_VOXELS,
        )
    logger.info(
        "split %d of %d connected objects: %d instances",
        summary["components_split"],
        summary["components"],
        summary["instances"],
    )
    return summary


def _bounding_boxes(labelled: Iterator[tuple[Block, np.ndarray]], count: int, shape) -> np.ndarray:
    """Per component id: ``z0, y0, x0, z1, y1, x1`` (stop exclusive) and its first voxel's raster index."""
    boxes = np.empty((count + 1, 7), np.int64)
    boxes[:, :3] = np.iinfo(np.int64).max
    boxes[:, 3:6] = -1
    boxes[:, 6] = np.iinfo(np.int64).max
    height, width = shape[1:]
    for block, labels in labelled:
        z, y, x = np.nonzero(labels)
        if z.size == 0:
            continue
        ids = labels[z, y, x].astype(np.int64)
        z, y, x = z + block[0].start, y + block[1].start, x + block[2].start
        for column, values in enumerate((z, y, x)):
            np.minimum.at(boxes[:, column], ids, values)
            np.maximum.at(boxes[:, column + 3], ids, values + 1)
        np.minimum.at(boxes[:, 6], ids, (z * height + y) * width + x)
    return boxes


def _component_slabs(grid: BlockGrid, labeler, read) -> Iterator[tuple[int, np.ndarray]]:
    """``(z start, components)``: whole-slice slabs of component ids, one per row of blocks in z."""
    slab, start = None, None
    for index, block in grid:
        zs = block[0]
        if zs.start != start:
            if slab is not None:
                yield start, slab
            start = zs.start
            slab = np.zeros((zs.stop - zs.start, *grid.shape[1:]), np.uint32)
        slab[:, block[1], block[2]] = labeler.labels(index, read(block))
    if slab is not None:
        yield start, slab


class _Window:
    """The slices being split: component ids and output labels from ``start`` up to ``stop``."""

    def __init__(self, plane: tuple[int, int]) -> None:
        self.start = self.stop = 0
        self.components = np.zeros((0, *plane), np.uint32)
        self.labels = np.zeros((0, *plane), np.uint32)

    def extend_to(self, z: int, slabs: Iterator[tuple[int, np.ndarray]]) -> None:
        """Read slabs until the window holds every slice before ``z``."""
        while self.stop < z:
            start, slab = next(slabs)
            self.components = np.concatenate([self.components, slab])
            self.labels = np.concatenate([self.labels, np.zeros_like(slab)])
            self.stop = start + len(slab)

    def flush_below(self, z: int, write: Callable[[slice, np.ndarray], None]) -> None:
        """Write out and drop the finished slices before ``z`` (every object starting there is split)."""
        end = min(z, self.stop)
        if end > self.start:
            write(slice(self.start, end), self.labels[: end - self.start])
            self.components = self.components[end - self.start :]
            self.labels = self.labels[end - self.start :]
            self.start = end
