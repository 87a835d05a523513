"""From probabilities to a clean mask: z-window, threshold, opening and hole filling, then a 3D size filter.

What ``sam-mito predict`` does to each slice's probability map, in order:

1. the z-window (:mod:`sam_mito.inference.zcontext`) averages it with its neighbours' maps;
2. it is thresholded;
3. an optional opening (a disk of ``opening`` pixels, per slice) cuts thin bridges and specks off;
4. holes are filled, per slice in 2D: background enclosed by foreground within the slice becomes
   foreground (3D filling would need the whole background's 3D components, and would miss holes
   that are open on one side in z);
5. objects smaller than ``min_size`` are dropped: 3D connected components (voxels sharing a face)
   of the whole finished mask, counted in voxels; for a single image, 2D components (4-connected)
   in pixels. This needs every slice, so it is a second pass over the written mask, block by block
   (:func:`drop_small_objects`, through :class:`sam_mito.volumes.instances.VolumeLabeler`): a volume larger
   than memory is never loaded. Only voxels of small objects are removed, so running the pass again
   over a partly filtered mask (a run killed during it) gives the same result.

A stack of a few slices cannot show the 3D size of what crosses it: a mitochondrion of 1000
pixels across fills 2000 voxels of a 2-slice stack. So the limits follow the stack
(``benchmarks/shortstacks.py``):

- an object that crosses every slice (touches the first and the last) is also kept when its mean
  cross-section has ``min_area`` pixels (500 by default, the single-image limit): the stack shows
  a section of it, not its size;
- the default ``min_size`` (:func:`default_min_size`) is 15000 voxels from :data:`MIN_SIZE_DEPTH`
  (21) slices deep, the depth it was measured on, and 15000 × depth / 21 in a shallower stack.

- where the mask's objects continue into the next slice less than in contiguous 5 nm slices
  (slices far apart, as in serial sections), both default limits shrink with the spacing that
  shows (:func:`size_limits`).

On a 21-slice stack this keeps most of the fixed 15000's gain; on stacks of 2 to 5 real slices and
on slices 65 nm apart it keeps the mitochondria 15000 removed. When the filter removes every object, the prediction's summary says so
(:func:`empty_mask_warnings`).

Instance labels (``--labels-out``) are the 3D components of the result. The defaults are plain command
line defaults, not model settings: training sees 2D patches only, so it cannot choose them, and
they depend on the stack (slice spacing, voxel size, object size) more than on the model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from numbers import Integral, Real

import numpy as np
from scipy import ndimage

from sam_mito.defaults import (
    CONTIGUOUS_CONTINUITY,
    DEFAULT_FILL_HOLES,
    DEFAULT_INSTANCES,
    DEFAULT_MIN_AREA,
    DEFAULT_MIN_SIZE,
    DEFAULT_MIN_SIZE_2D,
    DEFAULT_OPENING,
    DEFAULT_SEED_HEIGHT,
    DEFAULT_Z_WEIGHTING,
    DEFAULT_Z_WINDOW,
    MIN_SIZE_DEPTH,
)
from sam_mito.errors import SamMitoError
from sam_mito.inference.zcontext import check_z_window
from sam_mito.volumes.instances import Block, BlockGrid, VolumeLabeler, block_grid, label_blocks
from sam_mito.volumes.labelling import check_method
from sam_mito.volumes.volume import Volume

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostProcessing:
    """How probability maps become the final mask; validated on construction.

    Parameters
    ----------
    threshold : float
        Foreground where the (z-smoothed) probability exceeds this, ``0 <= threshold < 1``.
    z_window : int
        Slices in the z-window (odd; 1: off). See :mod:`sam_mito.inference.zcontext`.
    z_weighting : str
        ``gaussian`` or ``mean``.
    opening : int
        Radius in pixels of a per-slice opening with a disk (0: none).
    fill_holes : bool
        Fill holes per slice (2D).
    min_size : int or None
        Drop objects with fewer voxels (stacks, 3D) or pixels (single images); None picks the
        default for the stack's depth (:func:`default_min_size`) or :data:`DEFAULT_MIN_SIZE_2D`
        (see :meth:`for_volume`); 0 keeps every object.
    min_area : int
        Stacks only: an object that crosses every slice is kept as well when it has at least
        ``min_area`` voxels per slice (a mean cross-section of ``min_area`` pixels), however few
        voxels that makes; 0: such objects are judged by ``min_size`` like any other.
    instances : str
        How instance labels are numbered (:data:`sam_mito.defaults.INSTANCE_METHODS`):
        ``components`` (touching objects are one) or ``watershed`` (split at their narrowings,
        :mod:`sam_mito.volumes.watershed`).
    seed_height : float
        ``watershed`` only: how far (voxels of distance) a narrowing must dip below the centres it
        joins to split them.
    spacing_scale : bool or None
        Stacks: scale ``min_size`` and ``min_area`` down when the mask's objects continue from slice
        to slice less than in a contiguous stack (slices far apart, :func:`size_limits`). None (the
        default): on when ``min_size`` is left to its default, off when a number is given.
    """

    threshold: float = 0.5
    z_window: int = DEFAULT_Z_WINDOW
    z_weighting: str = DEFAULT_Z_WEIGHTING
    opening: int = DEFAULT_OPENING
    fill_holes: bool = DEFAULT_FILL_HOLES
    min_size: int | None = None
    min_area: int = DEFAULT_MIN_AREA
    instances: str = DEFAULT_INSTANCES
    seed_height: float = DEFAULT_SEED_HEIGHT
    spacing_scale: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not (
            isinstance(self.threshold, Real) and 0 <= self.threshold < 1
        ):
            raise SamMitoError(f"threshold {self.threshold!r}: expected a probability, 0 <= threshold < 1")
        check_z_window(self.z_window, self.z_weighting)
        for name in ("opening", "min_size", "min_area"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, Integral) or value < 0
            ):
                raise SamMitoError(f"{name} {value!r}: expected a whole number >= 0 (0: off)")
        check_method(self.instances, self.seed_height)
        if not isinstance(self.fill_holes, bool | np.bool_):
            raise SamMitoError(f"fill_holes {self.fill_holes!r}: expected True or False")

    def for_volume(self, volume: Volume) -> PostProcessing:
        """These settings resolved for ``volume``: ``min_size`` in voxels for a stack (by default for its
        depth, :func:`default_min_size`) or in pixels for a single image, whose ``min_area`` is 0."""
        resolved = {}
        if self.spacing_scale is None:
            resolved["spacing_scale"] = self.min_size is None and not volume.single_image
        if self.min_size is None:
            resolved["min_size"] = (
                DEFAULT_MIN_SIZE_2D if volume.single_image else default_min_size(len(volume))
            )
        if volume.single_image and self.min_area:
            resolved["min_area"] = 0  # an image is judged by its pixels alone
        return PostProcessing(**{**asdict(self), **resolved}) if resolved else self

    def settings(self) -> dict:
        """The settings as plain JSON values (recorded with a zarr output)."""
        values = asdict(self)
        kinds = {"threshold": float, "z_window": int, "opening": int, "fill_holes": bool}
        kinds |= {"min_size": int, "min_area": int, "instances": str, "seed_height": float}
        kinds |= {"spacing_scale": bool}
        for name, kind in kinds.items():
            values[name] = None if values[name] is None else kind(values[name])
        return values


@dataclass(frozen=True)
class SizeLimits:
    """The size filter's limits as applied to one mask (:func:`size_limits`).

    Attributes
    ----------
    min_size, min_area : int
        Voxels of an object, and pixels per slice of one crossing every slice, to be kept.
    continuity : float or None
        The share of the mask's voxels whose neighbour in the next slice is foreground too (None:
        not measured).
    scale : float
        The factor the settings' limits were multiplied by (1: as set).
    """

    min_size: int
    min_area: int
    continuity: float | None = None
    scale: float = 1.0


def z_continuity(mask: Volume) -> float | None:
    """The share of a stack mask's foreground voxels (all slices but the last) that continue into the next slice.

    Read two slices at a time. About 0.95 for mitochondria in contiguous 5 nm slices
    (:data:`sam_mito.defaults.CONTIGUOUS_CONTINUITY`), lower the farther apart the slices are.

    Returns
    -------
    float or None
        None for a single image, a one-slice stack or a mask with no foreground before its last slice.
    """
    if mask.single_image or len(mask) < 2:
        return None
    continued = counted = 0
    below = mask.raw_slice(0) > 0
    for z in range(1, len(mask)):
        above = mask.raw_slice(z) > 0
        continued += int(np.count_nonzero(below & above))
        counted += int(np.count_nonzero(below))
        below = above
    return continued / counted if counted else None


def size_limits(mask: Volume, post: PostProcessing) -> SizeLimits:
    """The limits the size filter applies to ``mask``: ``post``'s (resolved), scaled to the slice spacing.

    With ``post.spacing_scale`` (the default limits), both limits are multiplied by
    ``min(1, (1 - CONTIGUOUS_CONTINUITY) / (1 - continuity))``: an object of length L spans about
    L / spacing slices and continues into the next slice for a share ``1 - spacing / L`` of its voxels,
    so the share that does not continue measures the spacing, relative to the contiguous 5 nm stacks
    the defaults were measured on. Slices 65 nm apart (``epfl_sample``) hold far fewer voxels of
    each object, and the fixed limits removed its mitochondria (BENCHMARKS.md, "Short stacks").

    Parameters
    ----------
    mask : Volume
        The unfiltered 0/255 mask (read once more, two slices at a time, when scaling applies).
    post : PostProcessing
        Resolved settings (:meth:`PostProcessing.for_volume`).

    Returns
    -------
    SizeLimits
    """
    if not post.spacing_scale:
        return SizeLimits(post.min_size, post.min_area)
    continuity = z_continuity(mask)
    if continuity is None or continuity >= CONTIGUOUS_CONTINUITY:
        return SizeLimits(post.min_size, post.min_area, continuity)
    scale = (1 - CONTIGUOUS_CONTINUITY) / (1 - continuity)
    limits = SizeLimits(math.ceil(post.min_size * scale), math.ceil(post.min_area * scale), continuity, scale)
    logger.info(
        "objects continue into the next slice for %.3f of their voxels (contiguous stacks: %.3f): size limits "
        "x %.2f, %d voxels and %d pixels per slice",
        continuity,
        CONTIGUOUS_CONTINUITY,
        scale,
        limits.min_size,
        limits.min_area,
    )
    return limits


def default_min_size(depth: int) -> int:
    """The default ``min_size`` of a stack of ``depth`` slices, in voxels.

    :data:`DEFAULT_MIN_SIZE` from :data:`MIN_SIZE_DEPTH` slices on, the depth it was measured on;
    below, the same share of it per slice, ``ceil(DEFAULT_MIN_SIZE * depth / MIN_SIZE_DEPTH)``
    (about 714 voxels per slice): a shallower stack cannot hold as many voxels of an object.

    Parameters
    ----------
    depth : int
        Slices in the stack (at least 1).

    Returns
    -------
    int
    """
    return min(DEFAULT_MIN_SIZE, -(-DEFAULT_MIN_SIZE * depth // MIN_SIZE_DEPTH))


def clean_slice(probability: np.ndarray, post: PostProcessing) -> np.ndarray:
    """Threshold one (z-smoothed) probability map, open it and fill its holes: a 0/255 ``uint8`` mask.

    Parameters
    ----------
    probability : numpy.ndarray
        ``(H, W)`` float probabilities.
    post : PostProcessing
        The threshold, ``opening`` and ``fill_holes`` (``min_size`` is applied later, in 3D).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` ``uint8`` mask, 0 or 255.
    """
    mask = probability > post.threshold
    if post.opening > 0:
        mask = ndimage.binary_opening(mask, structure=disk(post.opening))
    if post.fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    return mask.astype(np.uint8) * 255


def disk(radius: int) -> np.ndarray:
    """A boolean disk of ``radius`` pixels, ``(2 radius + 1)`` square."""
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def drop_small_objects(
    mask: Volume, min_size: int, *, min_area: int = 0
) -> tuple[dict, Iterator[tuple[Block, np.ndarray, bool]]]:
    """Remove the 3D objects (face-connected) of a 0/255 mask volume with fewer than ``min_size`` voxels.

    Parameters
    ----------
    mask : Volume
        The mask, read block by block, twice (chunk-aligned blocks for zarr, whole slices otherwise);
        with ``min_area``, its first and last slices' blocks once more.
    min_size : int
        Smallest object kept, in voxels.
    min_area : int, keyword-only
        An object touching both the first and the last slice is kept too when it has at least
        ``min_area * depth`` voxels (0: off).

    Returns
    -------
    summary : dict
        ``objects_removed`` and ``objects_kept``.
    blocks : iterator of (Block, numpy.ndarray, bool)
        Every block in C order (z first) with its filtered 0/255 ``uint8`` mask and whether it changed.
    """
    grid = block_grid(mask.shape, mask.chunks)

    def read(block: Block) -> np.ndarray:
        return mask.block(*block) > 0

    labeler, labelled = label_blocks(grid, read)
    small = labeler.sizes < min_size
    depth = mask.shape[0]
    if min_area:
        small &= ~(_crossing(labeler, grid, read) & (labeler.sizes >= min_area * depth))
    small[0] = False
    summary = {"objects_removed": int(small.sum()), "objects_kept": int(labeler.count - small.sum())}
    crossing = min(min_size, min_area * depth) if min_area else min_size
    message = "dropping %d of %d objects under %d voxels (under %d if they cross all %d slices)"
    logger.info(message, small.sum(), labeler.count, min_size, crossing, depth)

    def blocks() -> Iterator[tuple[Block, np.ndarray, bool]]:
        for block, labels in labelled:
            dropped = small[labels]
            kept = (labels > 0) & ~dropped
            yield block, kept.astype(np.uint8) * 255, bool(dropped.any())

    return summary, blocks()


def _crossing(labeler: VolumeLabeler, grid: BlockGrid, read) -> np.ndarray:
    """Per instance id: whether it has voxels in both the first and the last slice."""
    depth = grid.shape[0]
    first, last = (np.zeros(labeler.count + 1, bool) for _ in range(2))
    for index, block in grid:
        zs = block[0]
        if zs.start == 0 or zs.stop == depth:
            labels = labeler.labels(index, read(block))
            if zs.start == 0:
                first[labels[0]] = True
            if zs.stop == depth:
                last[labels[-1]] = True
    return first & last


def empty_mask_warnings(
    removed: dict, post: PostProcessing | SizeLimits, depth: int, *, single_image: bool
) -> list[str]:
    """A warning, also logged, when the size filter removed every object it found; else none.

    Parameters
    ----------
    removed : dict
        :func:`drop_small_objects`'s ``objects_removed`` and ``objects_kept``.
    post : PostProcessing or SizeLimits
        The limits it applied (``min_size`` and ``min_area``).
    depth : int
        Slices in the stack.
    single_image : bool, keyword-only
        Whether it counted pixels of a single image rather than voxels of a stack.

    Returns
    -------
    list of str
        One message naming the flags that change the outcome, or empty.
    """
    if removed["objects_kept"] or not removed["objects_removed"]:
        return []
    found = f"the size filter removed all {removed['objects_removed']} objects found, so the mask is empty"
    if single_image:
        message = (
            f"{found} (each under {post.min_size} pixels): --min-size 0 keeps every object, "
            "a smaller --min-size keeps more"
        )
    else:
        crossing = (
            f", and those crossing all {depth} slices under {post.min_area} pixels per slice"
            if post.min_area
            else ""
        )
        message = (
            f"{found} (objects under {post.min_size} voxels go{crossing}): --min-size 0 keeps every object, "
            "a smaller --min-size or --min-area keeps more (slices far apart, as in serial sections, hold "
            "fewer voxels of each object than contiguous slices)"
        )
    logger.warning(message)
    return [message]
