"""A volume read one slice (or block) at a time, and the one intensity normalisation rule.

The rule, chosen per volume: ``uint8`` data passes through; integer data within 0..255 is cast;
anything else (16-bit, float) is rescaled linearly between the :data:`NORMALIZATION` percentiles of
the *whole volume* and clipped to 0..255. ``prepare`` records the rule in the dataset card and
training in the model config, so ``predict`` sees a new volume the way training saw its data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from sam_mito.errors import SamMitoError

logger = logging.getLogger(__name__)

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
        #: Windows computed so far, keyed by their percentiles (an error stores nothing).
        self._ranges: dict[tuple[float, float], tuple[float, float] | None] = {}

    @classmethod
    def from_array(cls, array: np.ndarray, *, source: str = "array") -> Volume:
        """Wrap a ``(H, W)``, ``(Z, H, W)`` or colour ``(Z, H, W, C)`` array."""
        array = np.asarray(array)
        single = array.ndim == 2 or (
            array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype == np.uint8
        )
        stack = array[None] if single else array
        if stack.ndim == 4 and stack.shape[-1] in (3, 4):
            stack = np.stack([to_gray(s) for s in stack])
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

        One pass over the volume per percentile pair (the window is remembered for that pair
        only): non-finite values are an error, raised again on every call; percentiles are
        computed over an evenly strided sample of every slice (exact up to
        :data:`PERCENTILE_SAMPLES` pixels).

        Parameters
        ----------
        percentiles : tuple of float
            ``(low, high)`` percentiles, 0..100.

        Returns
        -------
        tuple of float or None
            The window, or None for ``uint8`` data and integers within 0..255.

        Raises
        ------
        SamMitoError
            If the volume holds NaN or infinite values.
        """
        key = (float(percentiles[0]), float(percentiles[1]))
        if key not in self._ranges:
            self._ranges[key] = self._compute_range(key)
        return self._ranges[key]

    def _compute_range(self, percentiles: tuple[float, float]) -> tuple[float, float] | None:
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
        return float(lo), float(hi) if hi > lo else float(lo) + 1.0

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


def to_gray(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` colour as its channel mean (``uint8`` stays ``uint8``); 2-D passes through."""
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        mean = image[..., :3].astype(np.float32).mean(axis=-1)
        return np.round(mean).astype(np.uint8) if image.dtype == np.uint8 else mean
    return image
