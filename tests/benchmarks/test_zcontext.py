"""benchmarks/zcontext.py in quick mode: it sweeps every z-window and size, and renders what it measured."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.mark.slow
def test_quick_zcontext_benchmark_sweeps_windows_and_sizes(tmp_path):
    import zcontext

    result = zcontext.measure(str(tmp_path), quick=True)
    swept = {(row["z_window"], row["z_weighting"], row["min_size"]) for row in result["rows"]}
    assert swept == {(w, g, m) for w, g in zcontext.WINDOWS for m in zcontext.MIN_SIZES}
    assert all(0 <= row["foreground_iou"] <= 1 and row["seconds_per_slice"] > 0 for row in result["rows"])
    by_size = {row["min_size"]: row["objects"] for row in result["rows"] if row["z_window"] == 1}
    assert by_size[0] >= by_size[1000] >= by_size[40000]  # a larger limit never keeps more objects
    assert [row["min_size"] for row in result["single_images"]] == zcontext.MIN_SIZES_2D
    report = zcontext.render(result)
    assert "**(default)**" in report and report.count("\n| ") >= len(result["rows"]) + 2
