"""Read zarr volumes, and write OME-Zarr images that napari and other NGFF viewers open as they are.

Masks, labels and probability maps are written as an NGFF 0.4 image: a zarr (format 2) group whose
``multiscales`` metadata names one full-resolution array ``0`` with ``z``/``y``/``x`` space axes,
chunked one slice by at most :data:`CHUNK_SIDE` x :data:`CHUNK_SIDE` pixels and compressed with
Blosc/zstd. Zarr format 2 with NGFF 0.4 is what current readers (napari's built-in reader,
napari-ome-zarr, ome-zarr-py, neuroglancer, vizarr) all accept. Instance labels also carry the
``image-label`` key, so viewers show them as a labels layer. Reading (:func:`read_zarr`) is
reached through :func:`sam_mito.volumes.reading.open_volume`.
"""

from __future__ import annotations

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


def image_attrs(name: str, *, labels: bool = False) -> dict:
    """NGFF 0.4 group attributes for a ``(z, y, x)`` image with one full-resolution level."""
    attrs = {
        "multiscales": [
            {
                "version": NGFF_VERSION,
                "name": name,
                "axes": [{"name": axis, "type": "space"} for axis in "zyx"],
                "datasets": [
                    {
                        "path": LEVEL,
                        "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}],
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

    Returns
    -------
    zarr.Array
        The full-resolution array, chunks ``(1, <=512, <=512)``, filled with 0.
    """
    import zarr

    path = Path(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    name = name or path.name.removesuffix(".zarr")
    group.attrs.update({**image_attrs(name, labels=labels), **(attrs or {})})
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
