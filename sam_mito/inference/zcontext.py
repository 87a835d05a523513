"""3D context for stacks: each slice's probabilities averaged with its neighbours' along z, streamed.

SAM sees one slice at a time, so a mitochondrion that continues over dozens of slices flickers in
and out of the per-slice masks. A z-window of ``window`` slices (odd) centred on each slice replaces
its probability map by a weighted mean of the window's maps: ``mean`` weighs them alike,
``gaussian`` by a Gaussian of standard deviation ``(window - 1) / 4`` slices (the window spans
two standard deviations each way). At the volume's first and last slices the window is cut off
and the weights of the slices that exist are renormalised: no slice is mirrored or invented.
``window=1`` leaves the probabilities untouched.

:func:`smooth_slices` streams: it holds at most ``window`` maps. A smoothed slice depends only on
the maps of its own window, summed in a fixed order, so it comes out the same however the volume
is split: a process given a range of slices also predicts the ``window // 2`` slices beyond each end
of its range (its halo, :func:`window_slices`), and a resumed run predicts again the ``window // 2``
slices before (and after) each slice it still has to write, instead of keeping any state on disk.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from sam_mito.defaults import DEFAULT_Z_WEIGHTING, Z_WEIGHTINGS
from sam_mito.errors import SamMitoError

logger = logging.getLogger(__name__)


def check_z_window(window: int, weighting: str = DEFAULT_Z_WEIGHTING) -> None:
    """Refuse a window that is not a positive odd number of slices, or an unknown weighting.

    Parameters
    ----------
    window : int
        Slices in the window (odd, so it is centred; 1 turns the window off).
    weighting : str
        One of :data:`Z_WEIGHTINGS`.
    """
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1 or window % 2 == 0:
        raise SamMitoError(
            f"z_window {window!r}: expected an odd number of slices (1, 3, 5, ...; 1 turns it off)"
        )
    if weighting not in Z_WEIGHTINGS:
        raise SamMitoError(f"z_weighting {weighting!r}: expected one of {Z_WEIGHTINGS}")


def z_weights(window: int, weighting: str = DEFAULT_Z_WEIGHTING) -> np.ndarray:
    """The ``window`` weights (float64, largest 1 at the centre) of the slices ``-window // 2 .. window // 2``.

    Parameters
    ----------
    window : int
        Slices in the window (odd).
    weighting : str
        ``mean`` (all 1) or ``gaussian`` (standard deviation ``(window - 1) / 4`` slices).

    Returns
    -------
    numpy.ndarray
        One weight per offset along z, before normalisation.
    """
    check_z_window(window, weighting)
    offsets = np.arange(window, dtype=np.float64) - window // 2
    if weighting == "mean" or window == 1:
        return np.ones(window)
    sigma = (window - 1) / 4
    return np.exp(-0.5 * (offsets / sigma) ** 2)


def window_slices(targets: Iterable[int], depth: int, window: int) -> list[int]:
    """Every slice the z-window of any of ``targets`` reads: the targets and their halos, sorted.

    Parameters
    ----------
    targets : iterable of int
        The slices to smooth.
    depth : int
        Slices in the volume (the window stops at its ends).
    window : int
        Slices in the window (odd).

    Returns
    -------
    list of int
        Sorted slice indices in ``0 .. depth - 1``.
    """
    radius = window // 2
    needed: set[int] = set()
    for z in targets:
        needed.update(range(max(0, z - radius), min(depth, z + radius + 1)))
    return sorted(needed)


def smooth_slices(
    probabilities: Iterable[tuple[int, np.ndarray]],
    targets: Sequence[int],
    *,
    depth: int,
    window: int,
    weighting: str = DEFAULT_Z_WEIGHTING,
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream the z-window: ``(z, smoothed)`` for each of ``targets``, in order, as soon as its window is in.

    Parameters
    ----------
    probabilities : iterable of (int, numpy.ndarray)
        ``(z, probability map)`` in increasing ``z``: exactly :func:`window_slices` of ``targets``.
    targets : sequence of int
        The slices to yield.
    depth : int
        Slices in the volume.
    window : int
        Slices in the window (odd; 1 yields the maps unchanged).
    weighting : str, keyword-only
        One of :data:`Z_WEIGHTINGS`.

    Yields
    ------
    (int, numpy.ndarray)
        The slice and its float32 weighted mean over the window's slices that exist.
    """
    weights = z_weights(window, weighting)
    radius = window // 2
    pending = deque(sorted(targets))
    held: dict[int, np.ndarray] = {}
    for z, probability in probabilities:
        if window == 1:
            if pending and z == pending[0]:
                pending.popleft()
                yield z, probability
            continue
        held[z] = probability
        while pending and z >= min(pending[0] + radius, depth - 1):
            target = pending.popleft()
            yield target, _weighted_mean(held, target, radius, depth, weights)
        if pending:  # nothing before the next target's window is needed again
            for old in [k for k in held if k < pending[0] - radius]:
                del held[old]
    if pending:
        raise ValueError(f"slices {list(pending)[:5]} never got their window; pass window_slices(targets)")


def _weighted_mean(
    held: dict[int, np.ndarray], target: int, radius: int, depth: int, weights: np.ndarray
) -> np.ndarray:
    zs = range(max(0, target - radius), min(depth, target + radius + 1))
    missing = [z for z in zs if z not in held]
    if missing:
        raise ValueError(f"slice {target}: its window lacks slices {missing}")
    present = weights[[z - target + radius for z in zs]]
    normalised = (present / present.sum()).astype(np.float32)
    total = np.zeros(held[target].shape, dtype=np.float32)
    for weight, z in zip(normalised, zs, strict=True):  # always summed in z order: the same anywhere
        total += weight * held[z].astype(np.float32, copy=False)
    return total
