"""benchmarks/measure.py in quick mode: labels written, measured in a fresh process, the table checked."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.mark.slow
def test_quick_measure_benchmark_reports_rss_seconds_and_exact_voxel_counts(tmp_path):
    import measure

    result = measure.measure(str(tmp_path), quick=True)
    assert result["voxel_counts_exact"] and result["objects"] > 20
    assert 0 < result["imports_peak_rss_mib"] <= result["peak_rss_mib"] and result["seconds"] > 0
    assert 0 < result["objects_touching_border"] < result["objects"]
    report = measure.render(result)
    assert "| `sam-mito measure` |" in report and "exact for every ellipsoid" in report


def test_full_benchmark_labels_are_3_gib_of_uint32():
    import measure

    assert np.prod(measure.SHAPE) * 4 >= 3 * 2**30


def test_ellipsoid_slices_label_one_object_per_cell():
    import measure

    ellipsoids = measure.Ellipsoids((24, 48, 72), 24, (5.0, 10.0))
    middle = ellipsoids.slice(12)  # through the first layer's centres
    assert middle.dtype == np.uint32 and set(np.unique(middle)) == {0, 1, 2, 3, 4, 5, 6}
    assert middle[12, 12] == 1 and middle[12, 36] == 2 and middle[36, 12] == 4
    assert ellipsoids.slice(0).max() == 0  # semi-axes under 12: nothing at a cell's face
