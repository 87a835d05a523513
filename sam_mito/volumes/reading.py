"""Open EM images and volumes for lazy reading: TIFF stacks, single images, slice folders, zarr.

Every stage that needs pixels (``prepare``, ``predict``, ``score``, the demo) opens its input here:
multi-page TIFF stacks, single PNG/TIFF images, folders of PNG/TIFF slices sorted by name, and zarr
(an OME-Zarr image's full-resolution array, or a plain ``(Z, Y, X)`` array). Slices (or, for
zarr, chunk-aligned blocks) are read lazily, so memory stays at a few slices whatever the depth.
Each is a :class:`~sam_mito.volumes.volume.Volume`, normalised by the one rule of that module.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from sam_mito.errors import SamMitoError
from sam_mito.volumes.omezarr import read_zarr
from sam_mito.volumes.volume import NORMALIZATION, Volume, to_gray

logger = logging.getLogger(__name__)

SLICE_SUFFIXES = (".png", ".tif", ".tiff")


def is_zarr(path: str | Path) -> bool:
    """Whether ``path`` names a zarr store (its name ends in ``.zarr``)."""
    return Path(path).name.lower().endswith(".zarr")


def open_volume(path: str | Path) -> Volume:
    """Open an image, a multi-page TIFF stack, a folder of PNG/TIFF slices or a zarr for lazy reading.

    Parameters
    ----------
    path : str or Path
        A multi-page TIFF (compressed or not), a single PNG/TIFF image, a folder of PNG/TIFF
        slices sorted by file name, or a ``.zarr`` store: an OME-Zarr image (its full-resolution
        array; axes other than z, y, x must have length 1) or a plain ``(Z, Y, X)`` or ``(Y, X)``
        array.

    Returns
    -------
    Volume
        The stack, ``(1, H, W)`` for a single image.
    """
    path = Path(path)
    if not path.exists():
        raise SamMitoError(f"{path}: no such file or folder")
    if is_zarr(path):
        return read_zarr(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SLICE_SUFFIXES)
        if not files:
            raise SamMitoError(f"{path}: folder holds no PNG/TIFF slices (expected *.png, *.tif or *.tiff)")
        first = _read_image(files[0])
        if first.ndim != 2:
            raise SamMitoError(f"{files[0]}: slice has shape {first.shape}; expected one 2-D image per file")

        def read_file(z: int) -> np.ndarray:
            data = _read_image(files[z])
            if data.shape != first.shape:
                raise SamMitoError(
                    f"{files[z]}: slice shape {data.shape} differs from {files[0].name} {first.shape}; "
                    "all slices must match"
                )
            return data

        return Volume((len(files), *first.shape), first.dtype, read_file, str(path))
    if path.suffix.lower() in (".tif", ".tiff"):
        paged = _paged_tiff(path)
        if paged is not None:
            return paged
    return Volume.from_array(_read_image(path, keep_stack=True), source=str(path))


def _paged_tiff(path: Path) -> Volume | None:
    """A multi-page grayscale TIFF read page by page, or None for other TIFF layouts."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            paged = series.ndim == 3 and "S" not in series.axes and len(series.pages) == series.shape[0]
            shape, dtype = tuple(series.shape), series.dtype
    except (OSError, IndexError, ValueError, tifffile.TiffFileError) as err:
        raise SamMitoError(f"{path}: cannot read image ({err}); expected a PNG or TIFF file") from err
    if not paged:
        return None

    def read_page(z: int) -> np.ndarray:
        with tifffile.TiffFile(path) as tif:
            return tif.series[0].pages[z].asarray()

    return Volume(shape, dtype, read_page, str(path))


def _read_image(path: Path, *, keep_stack: bool = False) -> np.ndarray:
    """A PNG/TIFF file's pixels, colour averaged to gray; a stack is kept only if ``keep_stack``."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                array = series.asarray()
                if "S" in series.axes:
                    array = np.moveaxis(array, series.axes.index("S"), -1)
                    return np.stack([to_gray(a) for a in array]) if array.ndim == 4 else to_gray(array)
        else:
            with Image.open(path) as image:
                array = np.asarray(image)
                if image.mode == "LA":
                    array = array[..., 0]
    except (OSError, UnidentifiedImageError, ValueError, tifffile.TiffFileError) as err:
        raise SamMitoError(f"{path}: cannot read image ({err}); expected a PNG or TIFF file") from err
    array = to_gray(array)
    if array.ndim == 3 and not keep_stack:
        raise SamMitoError(f"{path}: slice has shape {array.shape}; expected one 2-D image per file")
    if array.ndim not in (2, 3):
        raise SamMitoError(f"{path}: image has shape {array.shape}; expected (H, W) or (slices, H, W)")
    return array


def to_binary_mask(stack: np.ndarray, *, source: str = "mask", threshold: float | None = None) -> np.ndarray:
    """Normalise a mask stack to ``uint8`` values in {0, 1}.

    Masks in {0, 1} or {0, 255} are accepted as they are; any other values are an error unless a
    ``threshold`` is given, in which case ``mask > threshold`` is foreground.

    Parameters
    ----------
    stack : numpy.ndarray
        ``(Z, H, W)`` mask values.
    source : str, keyword-only
        Name used in error messages.
    threshold : float, keyword-only
        Binarise other values with ``mask > threshold``.

    Returns
    -------
    numpy.ndarray
        ``uint8`` {0, 1} of the same shape.
    """
    if stack.ndim != 3 or stack.size == 0:
        raise SamMitoError(f"{source}: mask stack has shape {stack.shape}; expected (slices, height, width)")
    if threshold is not None:
        return (stack > threshold).astype(np.uint8)
    values = np.unique(stack)
    if set(values.tolist()) <= {0, 1}:
        return stack.astype(np.uint8)
    if set(values.tolist()) <= {0, 255}:
        return (stack == 255).astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:8]) + (" ..." if len(values) > 8 else "")
    raise SamMitoError(
        f"{source}: mask values {{{shown}}}; expected {{0, 1}} or {{0, 255}} (pass a threshold to binarise other masks)"
    )


def load_pair(
    images: str | Path, masks: str | Path, *, mask_threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
    """Read an image stack, normalised by :data:`NORMALIZATION`, and its mask stack, checked against each other.

    Parameters
    ----------
    images, masks : str or Path
        Stacks or slice folders (folders must hold the same file names).
    mask_threshold : float, keyword-only
        See :func:`to_binary_mask`.

    Returns
    -------
    images, masks : numpy.ndarray
        ``uint8`` images ``(Z, H, W)`` and ``uint8`` masks in {0, 1} of the same shape.
    window : tuple of float or None
        The intensity window the images were rescaled with (None: cast as stored).
    """
    if Path(images).is_dir() and Path(masks).is_dir():
        _check_matching_names(Path(images), Path(masks))
    volume = open_volume(images)
    image_stack = volume.read()
    mask_stack = to_binary_mask(open_volume(masks).raw(), source=str(masks), threshold=mask_threshold)
    if image_stack.shape != mask_stack.shape:
        raise SamMitoError(
            f"{masks}: mask stack shape {mask_stack.shape} does not match image stack {images} shape "
            f"{image_stack.shape}; expected one mask per image slice, same height and width"
        )
    logger.info("read %s: %d slices of %dx%d", images, *image_stack.shape)
    return image_stack, mask_stack, volume.intensity_range(tuple(NORMALIZATION["percentiles"]))


def _check_matching_names(images: Path, masks: Path) -> None:
    def stems(folder: Path) -> dict[str, Path]:
        return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in SLICE_SUFFIXES}

    image_files, mask_files = stems(images), stems(masks)
    missing = sorted(set(image_files) - set(mask_files))
    if missing:
        raise SamMitoError(f"{image_files[missing[0]]}: no mask with the same file name in {masks}")
    extra = sorted(set(mask_files) - set(image_files))
    if extra:
        raise SamMitoError(f"{mask_files[extra[0]]}: mask has no image with the same file name in {images}")
