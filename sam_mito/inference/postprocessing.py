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

Instance labels (``--labels``) are the 3D components of the result. The defaults are plain command
line defaults, not model settings: training sees 2D patches only, so it cannot choose them, and
they depend on the stack (slice spacing, voxel size, object size) more than on the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from numbers import Integral, Real

import numpy as np
from scipy import ndimage

from sam_mito.defaults import (
    DEFAULT_FILL_HOLES,
    DEFAULT_MIN_SIZE,
    DEFAULT_MIN_SIZE_2D,
    DEFAULT_OPENING,
    DEFAULT_Z_WEIGHTING,
    DEFAULT_Z_WINDOW,
)
from sam_mito.errors import SamMitoError
from sam_mito.inference.zcontext import check_z_window
from sam_mito.volumes.instances import Block, block_grid, label_blocks
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
        Drop objects with fewer voxels (stacks, 3D) or pixels (single images); None picks
        :data:`DEFAULT_MIN_SIZE` or :data:`DEFAULT_MIN_SIZE_2D` (see :meth:`for_volume`).
    """

    threshold: float = 0.5
    z_window: int = DEFAULT_Z_WINDOW
    z_weighting: str = DEFAULT_Z_WEIGHTING
    opening: int = DEFAULT_OPENING
    fill_holes: bool = DEFAULT_FILL_HOLES
    min_size: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not (
            isinstance(self.threshold, Real) and 0 <= self.threshold < 1
        ):
            raise SamMitoError(f"threshold {self.threshold!r}: expected a probability, 0 <= threshold < 1")
        check_z_window(self.z_window, self.z_weighting)
        for name in ("opening", "min_size"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, Integral) or value < 0
            ):
                raise SamMitoError(f"{name} {value!r}: expected a whole number >= 0 (0: off)")
        if not isinstance(self.fill_holes, bool | np.bool_):
            raise SamMitoError(f"fill_holes {self.fill_holes!r}: expected True or False")

    def for_volume(self, volume: Volume) -> PostProcessing:
        """These settings with ``min_size`` resolved for ``volume``: voxels for a stack, pixels for an image."""
        if self.min_size is not None:
            return self
        default = DEFAULT_MIN_SIZE_2D if volume.single_image else DEFAULT_MIN_SIZE
        return PostProcessing(**{**asdict(self), "min_size": default})

    def settings(self) -> dict:
        """The settings as plain JSON values (recorded with a zarr output)."""
        values = asdict(self)
        kinds = {"threshold": float, "z_window": int, "opening": int, "fill_holes": bool, "min_size": int}
        for name, kind in kinds.items():
            values[name] = None if values[name] is None else kind(values[name])
        return values


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


def drop_small_objects(mask: Volume, min_size: int) -> tuple[dict, Iterator[tuple[Block, np.ndarray, bool]]]:
    """Remove the 3D objects (face-connected) of a 0/255 mask volume with fewer than ``min_size`` voxels.

    Parameters
    ----------
    mask : Volume
        The mask, read block by block, twice (chunk-aligned blocks for zarr, whole slices otherwise).
    min_size : int
        Smallest object kept, in voxels.

    Returns
    -------
    summary : dict
        ``objects_removed`` and ``objects_kept``.
    blocks : iterator of (Block, numpy.ndarray, bool)
        Every block in C order (z first) with its filtered 0/255 ``uint8`` mask and whether it changed.
    """
    grid = block_grid(mask.shape, mask.chunks)
    labeler, labelled = label_blocks(grid, lambda block: mask.block(*block) > 0)
    small = labeler.sizes < min_size
    small[0] = False
    summary = {"objects_removed": int(small.sum()), "objects_kept": int(labeler.count - small.sum())}
    logger.info("dropping %d of %d objects under %d voxels", small.sum(), labeler.count, min_size)

    def blocks() -> Iterator[tuple[Block, np.ndarray, bool]]:
        for block, labels in labelled:
            dropped = small[labels]
            kept = (labels > 0) & ~dropped
            yield block, kept.astype(np.uint8) * 255, bool(dropped.any())

    return summary, blocks()
