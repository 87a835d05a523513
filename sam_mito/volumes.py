"""Read EM image/mask volumes: EPFL-style TIFF stacks and folders of PNG/TIFF slices."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from .errors import SamMitoError

logger = logging.getLogger(__name__)

SLICE_SUFFIXES = (".png", ".tif", ".tiff")


def read_stack(path: str | Path) -> np.ndarray:
    """Read a 2-D image, a 3-D stack, or a folder of slices as raw ``(Z, H, W[, C])`` array.

    Parameters
    ----------
    path : str or Path
        A multi-page TIFF (compressed or not), a single PNG/TIFF image, or a folder of PNG/TIFF
        slices sorted by file name.

    Returns
    -------
    numpy.ndarray
        The stack with slices on the first axis, in the file's own dtype.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SLICE_SUFFIXES)
        if not files:
            raise SamMitoError(f"{path}: folder holds no PNG/TIFF slices (expected *.png, *.tif or *.tiff)")
        slices = [_as_stack(*_read_single(f))[0] for f in files]
        shapes = {s.shape for s in slices}
        if len(shapes) > 1:
            first = slices[0].shape
            bad = next(f for f, s in zip(files, slices, strict=True) if s.shape != first)
            raise SamMitoError(
                f"{bad}: slice shape differs from {files[0].name} {first}; all slices must match"
            )
        return np.stack(slices)
    if not path.exists():
        raise SamMitoError(f"{path}: no such file or folder")
    return _as_stack(*_read_single(path))


def _as_stack(array: np.ndarray, colour: bool) -> np.ndarray:
    """Add the slice axis to a single image: ``(H, W)`` or ``(H, W, C)`` becomes ``(1, H, W[, C])``."""
    return array[None] if array.ndim == (3 if colour else 2) else array


def _read_single(path: Path) -> tuple[np.ndarray, bool]:
    """The file's pixels and whether its last axis holds colour samples."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                array = series.asarray()
                if "S" in series.axes:
                    return np.moveaxis(array, series.axes.index("S"), -1), True
                return array, False
        with Image.open(path) as image:
            return np.asarray(image), image.mode in ("RGB", "RGBA", "LA")
    except (OSError, UnidentifiedImageError, ValueError, tifffile.TiffFileError) as err:
        raise SamMitoError(f"{path}: cannot read image ({err}); expected a PNG or TIFF file") from err


def to_uint8_gray(
    stack: np.ndarray, *, source: str = "image", percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Convert an image stack to ``uint8`` grayscale ``(Z, H, W)``.

    RGB(A) slices are averaged over the colour channels; 16-bit and float data are rescaled
    between the given percentiles of the whole stack; ``uint8`` passes through unchanged.
    """
    if stack.size == 0:
        raise SamMitoError(f"{source}: empty stack; expected at least one slice")
    if stack.ndim == 4 and stack.shape[-1] in (3, 4):
        gray = stack[..., :3].astype(np.float32).mean(axis=-1)
        stack = np.round(gray).astype(np.uint8) if stack.dtype == np.uint8 else gray
    if stack.ndim != 3:
        raise SamMitoError(f"{source}: stack has shape {stack.shape}; expected (slices, height, width)")
    if stack.dtype == np.uint8:
        return stack
    data = stack.astype(np.float32)
    if np.issubdtype(stack.dtype, np.floating) or data.max() > 255 or data.min() < 0:
        lo, hi = np.percentile(data, percentiles)
        if hi <= lo:
            hi = lo + 1.0
        data = (data - lo) / (hi - lo) * 255.0
    return np.clip(np.round(data), 0, 255).astype(np.uint8)


def to_binary_mask(stack: np.ndarray, *, source: str = "mask", threshold: float | None = None) -> np.ndarray:
    """Normalise a mask stack to ``uint8`` values in {0, 1}.

    Masks in {0, 1} or {0, 255} are accepted as they are; any other values are an error unless a
    ``threshold`` is given, in which case ``mask > threshold`` is foreground.
    """
    if stack.ndim == 4 and stack.shape[-1] in (3, 4):
        stack = stack[..., 0]
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
) -> tuple[np.ndarray, np.ndarray]:
    """Read an image stack and its mask stack, checked against each other.

    Returns
    -------
    tuple of numpy.ndarray
        ``uint8`` images ``(Z, H, W)`` and ``uint8`` masks in {0, 1} of the same shape.
    """
    if Path(images).is_dir() and Path(masks).is_dir():
        _check_matching_names(Path(images), Path(masks))
    image_stack = to_uint8_gray(read_stack(images), source=str(images))
    mask_stack = to_binary_mask(read_stack(masks), source=str(masks), threshold=mask_threshold)
    if image_stack.shape != mask_stack.shape:
        raise SamMitoError(
            f"{masks}: mask stack shape {mask_stack.shape} does not match image stack {images} shape "
            f"{image_stack.shape}; expected one mask per image slice, same height and width"
        )
    logger.info("read %s: %d slices of %dx%d", images, *image_stack.shape)
    return image_stack, mask_stack


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
