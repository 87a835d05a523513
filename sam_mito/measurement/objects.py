"""Per-object measurements of instance labels, streamed slab by slab: size, surface, shape, position.

:func:`measure` reads a labels volume (``uint32`` instance ids, 0 = background, such as
``sam-mito predict --labels-out`` writes) in slabs of whole slices, twice:

1. every slab's voxels are counted per label: voxels, the sums of their coordinates (the
   centroid), their bounding box and, given an image, the sum of its values there;
2. each object's voxels are copied into a crop of its bounding box, padded by :data:`PAD`
   background voxels on every side, slab by slab; once the slab holding its last slice has been
   read, its surface is computed from the crop and the crop freed.

The surface is the area of the marching-cubes mesh (:func:`skimage.measure.marching_cubes` at level
0.5 and :func:`skimage.measure.mesh_surface_area`, with the voxel spacing) of the object's 0/1
indicator, padded so the mesh is closed. On raw voxels the mesh follows their staircase: it is exact
for faces along the axes but overstates the area of smooth shapes by 8-9% (a voxelised ball of
radius 10: +9.2%, so its sphericity is 0.91), a bias every smooth object shares. ``smoothing``
(a Gaussian sigma in voxels) smooths the indicator first: at 0.7 the error is within 1.1% for balls
of radius 7 to 30 voxels and ellipsoids whose shortest semi-axis is at least 5 voxels, but objects
a few voxels thick shrink (a 10x10x1 plate: -45% of its faces' area, -11% raw) and an object that keeps no
surface once smoothed is measured unsmoothed; hence the default, 0.

A volume of one slice (a single image, or a one-slice stack) is measured in 2D: areas and
perimeters (marching squares, :func:`skimage.measure.find_contours`, of the same indicator; a
digitised disk of radius 10: +4% to +9.5% raw, by where its centre falls; within 1.5% at smoothing
0.7) instead of volumes and surfaces,
circularity instead of sphericity.

Memory: one slab of labels (and of the image) with the first pass's work arrays, about 60 bytes
per labelled voxel of the slab (:data:`SLAB_VOXELS` voxels a slab, whole slices); plus, in the
second pass, one byte per voxel of the padded bounding boxes of the objects open at once (those
that cross a slab's boundary), and about 12 bytes per voxel of the largest object's padded
bounding box while its surface is computed. Nothing else grows with the volume: the per-object
figures are a few numbers each.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.measure import find_contours, marching_cubes, mesh_surface_area
from tqdm.auto import tqdm

from sam_mito.errors import SamMitoError
from sam_mito.volumes.omezarr import check_voxel_size, voxel_size_from_attrs
from sam_mito.volumes.reading import open_volume
from sam_mito.volumes.volume import Volume

logger = logging.getLogger(__name__)

#: Default Gaussian sigma, in voxels, an object's indicator is smoothed by before marching cubes (0: raw).
SURFACE_SMOOTHING = 0.0
#: Target voxels of one slab (whole slices; at least one slice, aligned to zarr chunks in z).
SLAB_VOXELS = 1 << 23
#: Background voxels around each object's bounding-box crop: the smoothed surface stays inside.
PAD = 2
#: Per-label entries of several slabs kept before they are merged into one per label.
COMPACT_ENTRIES = 1 << 20
#: Where ``table.attrs`` keeps what the table was measured from (read by ``summarize``).
ATTRS_KEY = "measurement"


def measure(
    labels: str | Path | np.ndarray,
    *,
    voxel_size: float | Sequence[float] | None = None,
    image: str | Path | np.ndarray | None = None,
    smoothing: float = SURFACE_SMOOTHING,
    slab: int | None = None,
) -> pd.DataFrame:
    """One row per labelled object: its size, surface, shape, bounding box, centroid and border contact.

    Streamed in slabs of whole slices (see the module docstring): peak memory is bounded by one
    slab plus the padded bounding-box crops of the objects crossing a slab boundary (the largest
    object's crop, for one big object), not by the volume.

    Parameters
    ----------
    labels : str, Path or numpy.ndarray
        Integer instance labels, 0 = background: a TIFF stack, a single image, a slice folder or a
        ``.zarr`` (what :func:`sam_mito.volumes.reading.open_volume` reads), or a ``(Z, Y, X)``
        or ``(Y, X)`` array. Each distinct value is one object, connected or not.
    voxel_size : float or sequence of float, keyword-only
        Voxel size in nanometres, ``(z, y, x)`` (a single number: isotropic; ``(y, x)`` for a
        single image). Default: the scale an OME-Zarr ``labels`` states with a length unit
        (``sam-mito predict --voxel-size`` writes it), else unknown: sizes in voxels.
    image : str, Path or numpy.ndarray, keyword-only
        An image of the same shape: adds each object's ``mean_intensity`` (of the values as
        stored, not normalised).
    smoothing : float, keyword-only
        Gaussian sigma in voxels the indicator is smoothed by before marching cubes (default 0:
        the raw voxels; see the module docstring for what each gives).
    slab : int, keyword-only
        Slices per slab (default: about :data:`SLAB_VOXELS` voxels, aligned to zarr chunks).
        The table does not depend on it.

    Returns
    -------
    pandas.DataFrame
        One row per object, sorted by ``label``. For a stack:

        - ``label``; ``voxels``; ``volume_nm3`` and ``volume_um3`` (only with a voxel size);
        - ``surface_nm2`` (with a voxel size) or ``surface_vx2`` (in voxel sides squared);
        - ``equivalent_diameter_nm`` or ``equivalent_diameter_vx``: the diameter of the ball of
          the same volume;
        - ``sphericity``: ``pi^(1/3) (6 V)^(2/3) / A``, 1 for a ball (V from the voxel count, A the
          surface; objects of a few voxels can exceed 1);
        - ``z0, y0, x0, z1, y1, x1``: the bounding box, ends exclusive;
        - ``centroid_z, centroid_y, centroid_x``: in voxel coordinates;
        - ``slices``: how many slices the object spans (``z1 - z0``);
        - ``touches_border``: whether it touches a face of the volume (cut by it: not whole);
        - ``mean_intensity`` (only with ``image``).

        For one slice (2D): ``label``; ``pixels``; ``area_nm2`` and ``area_um2`` (with a pixel
        size); ``perimeter_nm`` or ``perimeter_px``; ``equivalent_diameter_nm`` or
        ``equivalent_diameter_px`` (of the disk of the same area); ``circularity``
        (``4 pi A / P^2``, 1 for a disk); ``y0, x0, y1, x1``; ``centroid_z`` (always 0, so tables
        of stacks and images share their coordinates), ``centroid_y, centroid_x``;
        ``touches_border``; ``mean_intensity``. Volume, surface, sphericity and slices are not
        defined for one slice.

        ``table.attrs["measurement"]`` records the source, shape, dimensions, voxel size (and
        where it came from), the smoothing and any warnings, for
        :func:`sam_mito.measurement.summary.summarize`.

    Raises
    ------
    SamMitoError
        Before any slab is read: a missing or unreadable input, labels that are not integers, an
        image of another shape, a bad voxel size or ``slab``.
    """
    volume = _labels_volume(labels)
    intensity = _image_volume(image, volume) if image is not None else None
    dimensions = 2 if volume.shape[0] == 1 else 3
    source = None
    if voxel_size is None:
        voxel_size = voxel_size_from_attrs(volume.attrs)
        source = "labels metadata" if voxel_size is not None else None
    else:
        source = "argument"
    sizes = (
        check_voxel_size(voxel_size, name="voxel_size", dimensions=dimensions)
        if voxel_size is not None
        else None
    )
    if isinstance(smoothing, bool) or not (isinstance(smoothing, int | float) and 0 <= smoothing < math.inf):
        raise SamMitoError(f"smoothing {smoothing!r}: expected a Gaussian sigma in voxels >= 0")
    if slab is not None and (isinstance(slab, bool) or not isinstance(slab, int) or slab < 1):
        raise SamMitoError(f"slab {slab!r}: expected a number of slices >= 1")
    depth = slab or slab_depth(volume)
    stats = _count(volume, intensity, depth)
    spacing = sizes if sizes is not None else (1.0,) * dimensions
    surfaces = _surfaces(volume, stats, depth, spacing, smoothing)
    table = _table(stats, surfaces, volume.shape, sizes, with_intensity=intensity is not None)
    warnings = []
    if volume.dtype in (np.uint8, np.int8) and len(stats.keys) == 1 and stats.keys[0] in (1, 255):
        warnings.append(
            f"{volume.source}: every labelled voxel has the value {int(stats.keys[0])}: a binary mask, "
            "measured as one object; label it first (sam-mito predict --labels-out) to measure each object"
        )
    for warning in warnings:
        logger.warning(warning)
    table.attrs[ATTRS_KEY] = {
        "labels": volume.source,
        "image": intensity.source if intensity is not None else None,
        "shape": list(volume.shape[1:] if dimensions == 2 else volume.shape),
        "dimensions": dimensions,
        "voxel_size_nm": list(sizes) if sizes is not None else None,
        "voxel_size_from": source,
        "surface_smoothing": float(smoothing),
        "warnings": warnings,
    }
    logger.info("measured %d objects in %s", len(table), volume.source)
    return table


def slab_depth(volume: Volume) -> int:
    """Slices per slab: about :data:`SLAB_VOXELS` voxels, a multiple of a zarr's chunk depth."""
    unit = volume.chunks[0] if volume.chunks else 1
    per_slice = volume.shape[1] * volume.shape[2]
    return max(unit, SLAB_VOXELS // per_slice // unit * unit)


def _array_volume(array: np.ndarray, name: str) -> Volume:
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise SamMitoError(f"{name}: array of shape {array.shape}; expected (Y, X) or (Z, Y, X)")
    stack = array[None] if array.ndim == 2 else array
    return Volume(
        stack.shape,
        stack.dtype,
        lambda z: stack[z],
        name,
        single_image=array.ndim == 2,
        read_block=lambda zs, ys, xs: stack[zs, ys, xs],
    )


def _labels_volume(labels) -> Volume:
    volume = (
        _array_volume(np.asarray(labels), "labels") if isinstance(labels, np.ndarray) else open_volume(labels)
    )
    if volume.dtype.kind not in "iu":
        hint = (
            "; label a binary mask first (sam-mito predict --labels-out)" if volume.dtype.kind == "b" else ""
        )
        raise SamMitoError(
            f"{volume.source}: labels of dtype {volume.dtype}; expected integer instance labels "
            f"(0 = background, one id per object){hint}"
        )
    return volume


def _image_volume(image, labels: Volume) -> Volume:
    volume = Volume.from_array(image, source="image") if isinstance(image, np.ndarray) else open_volume(image)
    if volume.shape != labels.shape:
        raise SamMitoError(
            f"{volume.source}: image of shape {volume.shape}; expected the labels' shape {labels.shape} "
            f"({labels.source})"
        )
    if volume.dtype.kind not in "biuf":
        raise SamMitoError(f"{volume.source}: image of dtype {volume.dtype}; expected numbers")
    return volume


@dataclass
class ObjectStats:
    """What the first pass counts per label, one entry per label in ``keys`` (sorted)."""

    keys: np.ndarray  #: uint64 labels
    voxels: np.ndarray  #: int64
    sums: np.ndarray  #: (3, n) float64 sums of z, y, x
    lows: np.ndarray  #: (3, n) int64 first z, y, x
    highs: np.ndarray  #: (3, n) int64 last z, y, x (inclusive)
    intensity: np.ndarray  #: float64 sums of the image (zeros without one)

    @classmethod
    def empty(cls) -> ObjectStats:
        return cls(
            np.zeros(0, np.uint64),
            np.zeros(0, np.int64),
            np.zeros((3, 0)),
            np.zeros((3, 0), np.int64),
            np.zeros((3, 0), np.int64),
            np.zeros(0),
        )


class _Accumulator:
    """Per-label statistics of many slabs, merged (compacted) whenever enough have piled up."""

    def __init__(self) -> None:
        self._parts: list[ObjectStats] = []
        self._pending = 0

    def add(self, part: ObjectStats) -> None:
        self._parts.append(part)
        self._pending += part.keys.size
        if self._pending > COMPACT_ENTRIES:
            self._compact()

    def _compact(self) -> None:
        if len(self._parts) <= 1:
            return
        keys = np.concatenate([p.keys for p in self._parts])
        unique, inverse = np.unique(keys, return_inverse=True)
        n = unique.size

        def summed(values: np.ndarray) -> np.ndarray:
            return np.bincount(inverse, weights=values, minlength=n)

        voxels = np.concatenate([p.voxels for p in self._parts])
        sums = np.concatenate([p.sums for p in self._parts], axis=1)
        lows = np.concatenate([p.lows for p in self._parts], axis=1)
        highs = np.concatenate([p.highs for p in self._parts], axis=1)
        intensity = np.concatenate([p.intensity for p in self._parts])
        low = np.full((3, n), np.iinfo(np.int64).max, np.int64)
        high = np.full((3, n), -1, np.int64)
        for axis in range(3):
            np.minimum.at(low[axis], inverse, lows[axis])
            np.maximum.at(high[axis], inverse, highs[axis])
        self._parts = [
            ObjectStats(
                unique,
                np.bincount(inverse, weights=voxels, minlength=n).round().astype(np.int64),
                np.stack([summed(s) for s in sums]),
                low,
                high,
                summed(intensity),
            )
        ]
        self._pending = n

    def result(self) -> ObjectStats:
        self._compact()
        return self._parts[0] if self._parts else ObjectStats.empty()


def _slab_stats(block: np.ndarray, z0: int, image: np.ndarray | None, source: str) -> ObjectStats | None:
    """Per-label statistics of one ``(d, H, W)`` slab starting at slice ``z0``; None if it holds no object."""
    flat = block.reshape(-1)
    where = np.flatnonzero(flat)
    if where.size == 0:
        return None
    values = flat[where]
    if values.dtype.kind == "i" and values.min() < 0:
        raise SamMitoError(f"{source}: label {int(values.min())} below 0; expected instance ids >= 0")
    order = np.argsort(values)
    values, where = values[order], where[order]
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    _, height, width = block.shape
    z, rest = np.divmod(where, height * width)
    y, x = np.divmod(rest, width)
    z += z0
    coordinates = (z, y, x)
    intensity = (
        np.add.reduceat(image.reshape(-1)[where].astype(np.float64), starts)
        if image is not None
        else np.zeros(starts.size)
    )
    return ObjectStats(
        values[starts].astype(np.uint64),
        np.diff(np.append(starts, where.size)).astype(np.int64),
        np.stack([np.add.reduceat(c, starts).astype(np.float64) for c in coordinates]),
        np.stack([np.minimum.reduceat(c, starts) for c in coordinates]).astype(np.int64),
        np.stack([np.maximum.reduceat(c, starts) for c in coordinates]).astype(np.int64),
        intensity,
    )


def _slabs(volume: Volume, depth: int, desc: str):
    """``(z0, z1)`` of every slab, with a progress bar."""
    starts = range(0, volume.shape[0], depth)
    quiet = {"disable": True} if len(starts) < 2 else {}  # else tqdm's default (TQDM_DISABLE=1 silences it)
    for z0 in tqdm(starts, desc=desc, unit="slab", total=len(starts), **quiet):
        yield z0, min(volume.shape[0], z0 + depth)


def _read(volume: Volume, z0: int, z1: int) -> np.ndarray:
    return volume.block(slice(z0, z1), slice(0, volume.shape[1]), slice(0, volume.shape[2]))


def _count(volume: Volume, image: Volume | None, depth: int) -> ObjectStats:
    """The first pass: per-label voxels, coordinate sums, bounding boxes and intensity sums."""
    accumulator = _Accumulator()
    for z0, z1 in _slabs(volume, depth, "measuring (counts)"):
        part = _slab_stats(
            _read(volume, z0, z1), z0, _read(image, z0, z1) if image is not None else None, volume.source
        )
        if part is not None:
            accumulator.add(part)
    return accumulator.result()


def _surfaces(
    volume: Volume, stats: ObjectStats, depth: int, spacing: tuple[float, ...], smoothing: float
) -> np.ndarray:
    """The second pass: each object's surface (3D) or perimeter (2D) from its padded bounding-box crop."""
    surfaces = np.zeros(stats.keys.size)
    if stats.keys.size == 0:
        return surfaces
    flat = volume.shape[0] == 1
    pad_z = 0 if flat else PAD
    first, last = stats.lows[0], stats.highs[0] + 1  # z range of each object, end exclusive
    crops: dict[int, np.ndarray] = {}
    for z0, z1 in _slabs(volume, depth, "measuring (surfaces)"):
        active = np.flatnonzero((first < z1) & (last > z0))
        if active.size == 0:
            continue
        block = _read(volume, z0, z1)
        for index in active.tolist():
            (oz, oy, ox), (ez, ey, ex) = stats.lows[:, index], stats.highs[:, index] + 1
            crop = crops.get(index)
            if crop is None:
                shape = (ez - oz + 2 * pad_z, ey - oy + 2 * PAD, ex - ox + 2 * PAD)
                crop = crops[index] = np.zeros(shape, bool)
            start, stop = max(oz, z0), min(ez, z1)
            crop[start - oz + pad_z : stop - oz + pad_z, PAD:-PAD, PAD:-PAD] = (
                block[start - z0 : stop - z0, oy:ey, ox:ex] == stats.keys[index]
            )
            if ez <= z1:
                del crops[index]
                surfaces[index] = (
                    _perimeter(crop[0], spacing, smoothing) if flat else _surface(crop, spacing, smoothing)
                )
    return surfaces


def _field(crop: np.ndarray, smoothing: float) -> np.ndarray:
    """The 0/1 indicator as float32, smoothed unless that leaves nothing above the 0.5 level."""
    field = crop.astype(np.float32)
    if smoothing > 0:
        smooth = ndimage.gaussian_filter(field, smoothing, mode="constant")
        if smooth.max() > 0.5:
            return smooth
    return field


def _surface(crop: np.ndarray, spacing: tuple[float, ...], smoothing: float) -> float:
    """Marching-cubes area of a padded ``(z, y, x)`` crop, in the units of ``spacing`` squared."""
    vertices, faces, _, _ = marching_cubes(_field(crop, smoothing), 0.5, spacing=spacing)
    return float(mesh_surface_area(vertices, faces))


def _perimeter(crop: np.ndarray, spacing: tuple[float, ...], smoothing: float) -> float:
    """Marching-squares length of the contours of a padded ``(y, x)`` crop, in the units of ``spacing``."""
    scale = np.asarray(spacing, dtype=np.float64)
    return float(
        sum(
            np.sqrt(((np.diff(contour, axis=0) * scale) ** 2).sum(axis=1)).sum()
            for contour in find_contours(_field(crop, smoothing), 0.5)
        )
    )


def _table(
    stats: ObjectStats,
    surfaces: np.ndarray,
    shape: tuple[int, int, int],
    sizes: tuple[float, ...] | None,
    *,
    with_intensity: bool,
) -> pd.DataFrame:
    flat = shape[0] == 1
    voxels = stats.voxels
    count = voxels.astype(np.float64)
    nm = sizes is not None
    unit = "nm" if nm else ("px" if flat else "vx")
    size = count * (math.prod(sizes) if nm else 1.0)  # volume (area) in nm^3 (nm^2) or voxels
    labels = stats.keys.astype(np.int64) if (stats.keys < 2**63).all() else stats.keys
    columns: dict[str, np.ndarray] = {"label": labels, ("pixels" if flat else "voxels"): voxels}
    with np.errstate(divide="ignore", invalid="ignore"):
        if flat:
            if nm:
                columns["area_nm2"], columns["area_um2"] = size, size / 1e6
            columns[f"perimeter_{unit}"] = surfaces
            columns[f"equivalent_diameter_{unit}"] = 2 * np.sqrt(size / np.pi)
            columns["circularity"] = np.where(surfaces > 0, 4 * np.pi * size / surfaces**2, np.nan)
        else:
            if nm:
                columns["volume_nm3"], columns["volume_um3"] = size, size / 1e9
            columns[f"surface_{unit}2"] = surfaces
            columns[f"equivalent_diameter_{unit}"] = np.cbrt(6 * size / np.pi)
            columns["sphericity"] = np.where(
                surfaces > 0, np.cbrt(np.pi) * np.cbrt(6 * size) ** 2 / surfaces, np.nan
            )
    ends = stats.highs + 1
    axes = "yx" if flat else "zyx"
    first_axis = 1 if flat else 0
    for axis in axes:
        columns[f"{axis}0"] = stats.lows["zyx".index(axis)]
    for axis in axes:
        columns[f"{axis}1"] = ends["zyx".index(axis)]
    with np.errstate(divide="ignore", invalid="ignore"):
        for index, axis in enumerate("zyx"):
            columns[f"centroid_{axis}"] = stats.sums[index] / count
    if not flat:
        columns["slices"] = ends[0] - stats.lows[0]
    limits = np.asarray(shape)[:, None]
    columns["touches_border"] = (
        (stats.lows[first_axis:] == 0) | (ends[first_axis:] == limits[first_axis:])
    ).any(axis=0)
    if with_intensity:
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["mean_intensity"] = stats.intensity / count
    return pd.DataFrame(columns)
