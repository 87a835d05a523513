"""Write OME-Zarr images that napari and other NGFF viewers open as they are.

Masks, labels and probability maps are written as an NGFF 0.4 image: a zarr (format 2) group whose
``multiscales`` metadata names one full-resolution array ``0`` with ``z``/``y``/``x`` space axes,
chunked one slice by at most :data:`CHUNK_SIDE` x :data:`CHUNK_SIDE` pixels and compressed with
Blosc/zstd. Zarr format 2 with NGFF 0.4 is what current readers (napari's built-in reader,
napari-ome-zarr, ome-zarr-py, neuroglancer, vizarr) all accept. Instance labels also carry the
``image-label`` key, so viewers show them as a labels layer. Reading goes through
:func:`sam_mito.volumes.open_volume`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
