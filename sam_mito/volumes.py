"""Read EM images and volumes one slice at a time, with one intensity normalisation rule.

Every stage that needs pixels (``prepare``, ``predict``, ``score``, the demo) opens its input here:
multi-page TIFF stacks, single PNG/TIFF images, folders of PNG/TIFF slices sorted by name, and zarr
(an OME-Zarr image's full-resolution array, or a plain ``(Z, Y, X)`` array). Slices (or, for
zarr, chunk-aligned blocks) are read lazily, so memory stays at a few slices whatever the depth.

The normalisation rule, chosen per volume: ``uint8`` data passes through; integer data within
0..255 is cast; anything else (16-bit, float) is rescaled linearly between the
:data:`NORMALIZATION` percentiles of the *whole volume* and clipped to 0..255. ``prepare`` records
the rule in the dataset card and training in the model config, so ``predict`` sees a new volume the
way training saw its data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from .errors import SamMitoError

logger = logging.getLogger(__name__)

SLICE_SUFFIXES = (".png", ".tif", ".tiff")
#: The one normalisation rule; recorded in dataset cards and model configs.
NORMALIZATION = {"rule": "volume-percentiles", "percentiles": [0.5, 99.5]}
#: Pixels sampled (evenly strided over every slice) to estimate a volume's percentiles.
PERCENTILE_SAMPLES = 1 << 22


class Volume:
    """A ``(Z, H, W)`` grayscale image stack read one slice at a time.

    Use :func:`open_volume` for files and folders, :meth:`from_array` for arrays in memory.

    Parameters
    ----------
    shape : tuple of int
        ``(Z, H, W)``.
    dtype : numpy.dtype
        The slices' data type as stored (colour averaged to gray keeps ``uint8``).
    read : callable
        ``read(z)`` returns slice ``z`` as a 2-D array.
    source : str
        Name used in error messages.
    single_image : bool, keyword-only
        True when the input was one 2-D image (shape ``(1, H, W)``).
    chunks : tuple of int or None, keyword-only
        ``(z, y, x)`` storage chunks of a chunked (zarr) source, which reads any block cheaply;
        None for slice-by-slice sources (TIFF pages, slice files).
    read_block : callable, keyword-only
        ``read_block(zs, ys, xs)`` returns a ``(z, y, x)`` block as stored; by default the slices'
        crops are stacked.
    attrs : dict, keyword-only
        Metadata of the source (a zarr group's attributes), e.g. how a prediction was made.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        read: Callable[[int], np.ndarray],
        source: str,
        *,
        single_image: bool = False,
        chunks: tuple[int, int, int] | None = None,
        read_block: Callable[[slice, slice, slice], np.ndarray] | None = None,
        attrs: dict | None = None,
    ) -> None:
        if len(shape) != 3 or 0 in shape:
            raise SamMitoError(f"{source}: image has shape {shape}; expected (H, W) or (slices, H, W)")
        self.shape, self.dtype, self.source, self.single_image = (
            tuple(shape),
            np.dtype(dtype),
            source,
            single_image,
        )
        self._read, self._read_block = read, read_block
        self.chunks, self.attrs = chunks, attrs or {}
        self._range: tuple[float, float] | None | bool = False  # False: not computed yet

    @classmethod
    def from_array(cls, array: np.ndarray, *, source: str = "array") -> Volume:
        """Wrap a ``(H, W)``, ``(Z, H, W)`` or colour ``(Z, H, W, C)`` array."""
        array = np.asarray(array)
        single = array.ndim == 2 or (
            array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype == np.uint8
        )
        stack = array[None] if single else array
        if stack.ndim == 4 and stack.shape[-1] in (3, 4):
            stack = np.stack([_gray(s) for s in stack])
        return cls(stack.shape, stack.dtype, lambda z: stack[z], source, single_image=single)

    def __len__(self) -> int:
        return self.shape[0]

    def raw_slice(self, z: int) -> np.ndarray:
        """Slice ``z`` as stored (colour averaged to gray), checked against the volume's shape."""
        data = self._read(z)
        if data.shape != self.shape[1:]:
            raise SamMitoError(
                f"{self.source}: slice {z} has shape {data.shape}; expected {self.shape[1:]} like the first"
            )
        return data

    def block(self, zs: slice, ys: slice, xs: slice) -> np.ndarray:
        """The ``(z, y, x)`` block ``[zs, ys, xs]`` as stored (slices with explicit start and stop)."""
        if self._read_block is not None:
            data = np.asarray(self._read_block(zs, ys, xs))
            expected = tuple(s.stop - s.start for s in (zs, ys, xs))
            if data.shape != expected:
                raise SamMitoError(f"{self.source}: block read with shape {data.shape}; expected {expected}")
            return data
        return np.stack([self.raw_slice(z)[ys, xs] for z in range(zs.start, zs.stop)])

    def raw(self) -> np.ndarray:
        """The whole volume as stored, ``(Z, H, W)`` (loads every slice)."""
        return np.stack([self.raw_slice(z) for z in range(len(self))])

    def intensity_range(self, percentiles: tuple[float, float]) -> tuple[float, float] | None:
        """The ``(low, high)`` this volume is rescaled between, or None when it is cast as is.

        One pass over the volume: non-finite values are an error; percentiles are computed over
        an evenly strided sample of every slice (exact up to :data:`PERCENTILE_SAMPLES` pixels).
        """
        if self._range is not False:
            return self._range
        self._range = None
        if self.dtype == np.uint8:
            return None
        stride = max(1, int(np.ceil(np.prod(self.shape) / PERCENTILE_SAMPLES)))
        samples, low, high, bad = [], np.inf, -np.inf, 0
        for z in range(len(self)):
            data = self.raw_slice(z).astype(np.float64, copy=False).ravel()
            finite = np.isfinite(data)
            bad += int(data.size - finite.sum())
            if bad == 0:
                low, high = min(low, data.min()), max(high, data.max())
                samples.append(data[::stride])
        if bad:
            raise SamMitoError(
                f"{self.source}: {bad} NaN or infinite pixel value(s); expected finite intensities"
            )
        if np.issubdtype(self.dtype, np.integer) and low >= 0 and high <= 255:
            return None
        lo, hi = np.percentile(np.concatenate(samples), percentiles)
        self._range = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
        return self._range

    def slices(
        self, normalization: dict | None = None, *, indices: Iterable[int] | None = None
    ) -> Iterator[np.ndarray]:
        """Yield ``uint8`` slices normalised by ``normalization`` (default :data:`NORMALIZATION`).

        ``indices`` picks the slices (default: all, in order); the intensity window is always the
        whole volume's, so a slice normalises the same whichever others are read.
        """
        rule = normalization or NORMALIZATION
        if rule.get("rule") != NORMALIZATION["rule"]:
            raise SamMitoError(f"normalization rule {rule.get('rule')!r}: expected {NORMALIZATION['rule']!r}")
        window = self.intensity_range(tuple(rule["percentiles"]))
        for z in range(len(self)) if indices is None else indices:
            yield to_uint8(self.raw_slice(z), window)

    def read(self, normalization: dict | None = None) -> np.ndarray:
        """The whole volume normalised to ``uint8`` ``(Z, H, W)`` (loads every slice)."""
        return np.stack(list(self.slices(normalization)))


def to_uint8(data: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """One slice as ``uint8``: cast when ``window`` is None, else rescaled ``low..high`` → ``0..255``."""
    if window is None:
        return data.astype(np.uint8, copy=False)
    low, high = window
    scaled = (data.astype(np.float32) - low) / (high - low) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


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
        from .omezarr import read_zarr

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


def _gray(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` colour as its channel mean (``uint8`` stays ``uint8``); 2-D passes through."""
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        mean = image[..., :3].astype(np.float32).mean(axis=-1)
        return np.round(mean).astype(np.uint8) if image.dtype == np.uint8 else mean
    return image


def _read_image(path: Path, *, keep_stack: bool = False) -> np.ndarray:
    """A PNG/TIFF file's pixels, colour averaged to gray; a stack is kept only if ``keep_stack``."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                array = series.asarray()
                if "S" in series.axes:
                    array = np.moveaxis(array, series.axes.index("S"), -1)
                    return np.stack([_gray(a) for a in array]) if array.ndim == 4 else _gray(array)
        else:
            with Image.open(path) as image:
                array = np.asarray(image)
                if image.mode == "LA":
                    array = array[..., 0]
    except (OSError, UnidentifiedImageError, ValueError, tifffile.TiffFileError) as err:
        raise SamMitoError(f"{path}: cannot read image ({err}); expected a PNG or TIFF file") from err
    array = _gray(array)
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
