"""Read zarr volumes, and write OME-Zarr images that napari and other NGFF viewers open as they are.

Masks, labels and probability maps are written as an NGFF 0.4 image: a zarr (format 2) group whose
``multiscales`` metadata names one full-resolution array ``0`` with ``z``/``y``/``x`` space axes,
chunked one slice by at most :data:`CHUNK_SIDE` x :data:`CHUNK_SIDE` pixels and compressed with
Blosc/zstd. Zarr format 2 with NGFF 0.4 is what current readers (napari's built-in reader,
napari-ome-zarr, ome-zarr-py, neuroglancer, vizarr) all accept. Instance labels also carry the
``image-label`` key, so viewers show them as a labels layer. Reading (:func:`read_zarr`) is
reached through :func:`sam_mito.volumes.reading.open_volume`.

The voxel size: given one (in nanometres, ``(z, y, x)``), an image's ``scale`` transformation holds
it and its axes name the unit ``nanometer``; without one the scale is ``[1, 1, 1]`` and the axes have
no unit. :func:`voxel_size_from_attrs` (and :func:`read_voxel_size`) read it back from any NGFF
0.4/0.5 image, in nanometres whatever length unit it names, or None when the axes have no unit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sam_mito.errors import SamMitoError
from sam_mito.files import mark
from sam_mito.volumes.volume import Volume

NGFF_VERSION = "0.4"
#: Largest chunk side in y and x; chunks are always one slice deep.
CHUNK_SIDE = 512
#: The full-resolution array inside the group.
LEVEL = "0"


def compressor():
    """The codec every array is written with: Blosc zstd level 5 with bit shuffling (lossless)."""
    import numcodecs

    return numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)


#: The unit a voxel size is written in, and every NGFF length unit read back, in nanometres.
UNIT = "nanometer"
LENGTH_UNITS_NM = {
    "angstrom": 0.1,
    "picometer": 1e-3,
    "nanometer": 1.0,
    "micrometer": 1e3,
    "millimeter": 1e6,
    "centimeter": 1e7,
    "meter": 1e9,
    # abbreviations some writers use instead of the UDUNITS names NGFF asks for
    "nm": 1.0,
    "um": 1e3,
    "\u00b5m": 1e3,
    "micron": 1e3,
    "mm": 1e6,
}


def check_voxel_size(
    voxel_size: float | Sequence[float], *, name: str = "voxel_size", dimensions: int = 3
) -> tuple[float, ...]:
    """``voxel_size`` as a tuple of ``dimensions`` finite nanometre sizes > 0, ``(z, y, x)``.

    A single number is an isotropic size. With ``dimensions=2`` (a single image) ``(y, x)`` is
    expected; a ``(z, y, x)`` triple is accepted too and its z dropped.

    Raises
    ------
    SamMitoError
        Naming ``name`` and what was expected.
    """
    axes = "zyx"[3 - dimensions :]
    expected = f"expected {dimensions} sizes in nanometres ({', '.join(axes)}), each a finite number > 0"
    try:
        values = [voxel_size] * dimensions if isinstance(voxel_size, numbers.Real) else list(voxel_size)
        sizes = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise SamMitoError(f"{name} {voxel_size!r}: {expected}") from None
    if dimensions == 2 and len(sizes) == 3:
        sizes = sizes[1:]
    if isinstance(voxel_size, bool | str) or len(sizes) != dimensions:
        raise SamMitoError(f"{name} {voxel_size!r}: {expected}")
    if not all(math.isfinite(v) and v > 0 for v in sizes):
        raise SamMitoError(f"{name} {list(sizes)}: {expected}")
    return sizes


def image_attrs(name: str, *, labels: bool = False, voxel_size: Sequence[float] | None = None) -> dict:
    """NGFF 0.4 group attributes for a ``(z, y, x)`` image with one full-resolution level.

    With ``voxel_size`` (nanometres, ``(z, y, x)``) the level's scale is the voxel size and each
    axis names the unit ``nanometer``; without, the scale is ``[1, 1, 1]`` and the axes have no unit.
    """
    axes = [{"name": axis, "type": "space"} for axis in "zyx"]
    scale = [1.0, 1.0, 1.0]
    if voxel_size is not None:
        scale = list(check_voxel_size(voxel_size))
        axes = [{**axis, "unit": UNIT} for axis in axes]
    attrs = {
        "multiscales": [
            {
                "version": NGFF_VERSION,
                "name": name,
                "axes": axes,
                "datasets": [
                    {
                        "path": LEVEL,
                        "coordinateTransformations": [{"type": "scale", "scale": scale}],
                    }
                ],
            }
        ]
    }
    if labels:
        attrs["image-label"] = {"version": NGFF_VERSION}
    return attrs


def create_image(
    path: str | Path,
    shape: tuple[int, int, int],
    dtype: np.dtype | str,
    *,
    name: str | None = None,
    labels: bool = False,
    attrs: dict | None = None,
    voxel_size: Sequence[float] | None = None,
):
    """Create an empty OME-Zarr image at ``path`` (replacing whatever store is there) and return its array.

    The store gets sam-mito's marker (:data:`sam_mito.files.MARKER`), so a later run may replace
    it; callers check that what they replace is theirs (:func:`sam_mito.files.check_outputs`).

    Parameters
    ----------
    path : str or Path
        The ``.zarr`` folder.
    shape : tuple of int
        ``(Z, Y, X)``.
    dtype : numpy.dtype or str
        Pixel type (``uint8`` masks, ``uint32`` labels, ``float32`` probabilities).
    name : str, keyword-only
        The image's name in its metadata (default: the folder name without ``.zarr``).
    labels : bool, keyword-only
        Mark the image as instance labels (``image-label``).
    attrs : dict, keyword-only
        Extra group attributes (sam-mito records how the image was made under ``sam_mito``).
    voxel_size : sequence of float, keyword-only
        ``(z, y, x)`` voxel size in nanometres, written as the image's scale with the unit
        ``nanometer`` (default: scale 1, no unit).

    Returns
    -------
    zarr.Array
        The full-resolution array, chunks ``(1, <=512, <=512)``, filled with 0.
    """
    import zarr

    path = Path(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    name = name or path.name.removesuffix(".zarr")
    group.attrs.update({**image_attrs(name, labels=labels, voxel_size=voxel_size), **(attrs or {})})
    mark(path)
    return group.create_array(
        name=LEVEL,
        shape=tuple(shape),
        chunks=(1, min(CHUNK_SIDE, shape[1]), min(CHUNK_SIDE, shape[2])),
        dtype=np.dtype(dtype),
        compressors=compressor(),
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
    )


def open_image(path: str | Path, *, mode: str = "r+"):
    """The group and full-resolution array of an image written by :func:`create_image`."""
    import zarr

    group = zarr.open_group(str(path), mode=mode, zarr_format=2)
    return group, group[LEVEL]


def set_voxel_size(path: str | Path, voxel_size: Sequence[float]) -> None:
    """Write ``voxel_size`` (nanometres, ``(z, y, x)``) into an existing image made by :func:`create_image`.

    The level's scale becomes the voxel size and the axes name the unit ``nanometer``; every
    other attribute is kept.
    """
    import zarr

    sizes = check_voxel_size(voxel_size)
    group = zarr.open_group(str(path), mode="r+", zarr_format=2)
    multiscales = dict(group.attrs)["multiscales"]
    fresh = image_attrs("", voxel_size=sizes)["multiscales"][0]
    multiscales[0]["axes"] = fresh["axes"]
    multiscales[0]["datasets"][0]["coordinateTransformations"] = fresh["datasets"][0][
        "coordinateTransformations"
    ]
    group.attrs["multiscales"] = multiscales


def voxel_size_from_attrs(attrs: dict) -> tuple[float, ...] | None:
    """The voxel size in nanometres that an NGFF image's group attributes state, or None.

    Read from the first multiscale's full-resolution level: its ``scale`` transformations (times
    the multiscale's own, where it has one) over the space axes, converted from each axis's
    length unit. None when there is no ``multiscales`` metadata, a space axis has no unit or one
    that is not a length, or the scale is missing or not positive.

    Returns
    -------
    tuple of float or None
        ``(z, y, x)``, or ``(y, x)`` for a 2-D image.
    """
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    try:
        multiscale = multiscales[0]
        axes = [a if isinstance(a, dict) else {"name": a} for a in multiscale["axes"]]
        scale = np.ones(len(axes))
        for transforms in (
            multiscale["datasets"][0].get("coordinateTransformations", []),
            multiscale.get("coordinateTransformations", []),
        ):
            for transform in transforms:
                if transform.get("type") == "scale":
                    scale = scale * np.asarray(transform["scale"], dtype=float)
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    if scale.shape != (len(axes),):
        return None
    sizes = []
    for axis, value in zip(axes, scale, strict=True):
        if axis.get("type") == "space" or axis.get("name") in ("z", "y", "x"):
            factor = LENGTH_UNITS_NM.get(str(axis.get("unit", "")).lower())
            if factor is None or not (math.isfinite(value) and value > 0):
                return None
            sizes.append(float(value) * factor)
    return tuple(sizes) if len(sizes) in (2, 3) else None


def read_voxel_size(path: str | Path) -> tuple[float, ...] | None:
    """The voxel size in nanometres an OME-Zarr image at ``path`` states (:func:`voxel_size_from_attrs`)."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SamMitoError(f"{path}: cannot open as zarr ({err}); expected an OME-Zarr image") from err
    return voxel_size_from_attrs(dict(node.attrs))


def read_zarr(path: Path) -> Volume:
    """A zarr array, or an OME-Zarr image's first (full-resolution) multiscale level, as a Volume."""
    import zarr

    expected = "expected an OME-Zarr image or a (Z, Y, X) zarr array"
    try:
        node = zarr.open(str(path), mode="r")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SamMitoError(f"{path}: cannot open as zarr ({err}); {expected}") from err
    attrs, axes = dict(node.attrs), None
    if isinstance(node, zarr.Group):
        multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if not multiscales or not multiscales[0].get("datasets"):
            raise SamMitoError(f"{path}: zarr group without OME-Zarr multiscales metadata; {expected}")
        level = multiscales[0]["datasets"][0]["path"]
        try:
            array = node[level]
        except KeyError as err:
            raise SamMitoError(
                f"{path}: multiscales names array '{level}', which is missing; {expected}"
            ) from err
        if not isinstance(array, zarr.Array):
            raise SamMitoError(f"{path}/{level}: not an array; {expected}")
        axes = [a["name"] if isinstance(a, dict) else a for a in multiscales[0].get("axes", [])] or None
    else:
        array = node
    index = _spatial_index(array.shape, axes, str(path))
    if array.dtype.kind not in "biuf" or index is None:
        raise SamMitoError(
            f"{path}: zarr array of shape {array.shape} and dtype {array.dtype}; {expected} of numbers"
        )
    kept = [i for i, item in enumerate(index) if isinstance(item, slice)]
    shape = tuple(array.shape[i] for i in kept)
    chunks = tuple(array.chunks[i] for i in kept)
    single = len(shape) == 2
    if single:
        shape, chunks = (1, *shape), (1, *chunks)

    def read_block(zs: slice, ys: slice, xs: slice) -> np.ndarray:
        where = list(index)
        spatial = [ys, xs] if single else [zs, ys, xs]
        for i, s in zip(kept, spatial, strict=True):
            where[i] = s
        return array[tuple(where)].reshape(zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start)

    def read(z: int) -> np.ndarray:
        return read_block(slice(z, z + 1), slice(0, shape[1]), slice(0, shape[2]))[0]

    return Volume(
        shape,
        array.dtype,
        read,
        str(path),
        single_image=single,
        chunks=chunks,
        read_block=read_block,
        attrs=attrs,
    )


def _spatial_index(shape: tuple[int, ...], axes: list[str] | None, source: str) -> list | None:
    """Index picking the z/y/x (or y/x) axes of an array, fixing every other axis at 0 (None: not an image).

    With named axes, non-spatial ones (t, c) must have length 1; without, leading length-1 axes are
    dropped until two or three remain.
    """
    if axes is not None:
        if len(axes) != len(shape):
            raise SamMitoError(f"{source}: multiscales axes {axes} do not match the array's shape {shape}")
        spatial = [name in ("z", "y", "x") for name in axes]
    else:
        extra = max(0, len(shape) - 3)
        spatial = [False] * extra + [True] * (len(shape) - extra)
    if sum(spatial) not in (2, 3) or any(n != 1 for n, keep in zip(shape, spatial, strict=True) if not keep):
        return None
    return [slice(None) if keep else 0 for keep in spatial]
