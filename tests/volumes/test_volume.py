"""The intensity window of a volume: one per volume and percentile pair, never a stale one."""

import numpy as np
import pytest

from sam_mito.errors import SamMitoError
from sam_mito.volumes.volume import Volume


def _ramp() -> Volume:
    """One 10x10 uint16 slice holding 0, 10, ..., 990 (so percentile p is 9.9 p)."""
    return Volume.from_array((np.arange(100, dtype=np.uint16) * 10).reshape(1, 10, 10), source="ramp")


def test_each_percentile_pair_gets_its_own_window():
    volume = _ramp()
    assert volume.intensity_range((0, 100)) == (0.0, 990.0)
    assert volume.intensity_range((10, 90)) == pytest.approx((99.0, 891.0))
    assert volume.intensity_range((0, 100)) == (0.0, 990.0)


def test_slices_normalised_with_other_percentiles_use_those_percentiles():
    volume = _ramp()
    (full,) = volume.slices({"rule": "volume-percentiles", "percentiles": [0, 100]})
    (clipped,) = volume.slices({"rule": "volume-percentiles", "percentiles": [10, 90]})
    assert full.max() == 255 and full[0, 9] == 23  # 90 of 0..990 -> 23.2
    assert clipped[0, 9] == 0 and clipped[9, 9] == 255  # 90 and 990 fall outside 99..891


def test_non_finite_values_fail_on_every_call_not_only_the_first():
    stack = np.ones((1, 4, 4), np.float32)
    stack[0, 0, 0] = np.nan
    volume = Volume.from_array(stack, source="nan.tif")
    for _ in range(2):
        with pytest.raises(SamMitoError, match=r"nan\.tif: 1 NaN or infinite pixel value"):
            volume.intensity_range((0.5, 99.5))
    with pytest.raises(SamMitoError, match="NaN"):
        volume.read()  # never cast to uint8 silently


def test_uint8_and_in_range_integers_are_cast_for_any_percentiles():
    assert Volume.from_array(np.zeros((1, 2, 2), np.uint8)).intensity_range((0, 100)) is None
    small = Volume.from_array(np.array([[[3, 40], [90, 120]]], np.uint16))
    assert small.intensity_range((0, 100)) is None
    assert small.intensity_range((10, 90)) is None
