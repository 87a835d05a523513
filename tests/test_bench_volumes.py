"""benchmarks/tiling.py and benchmarks/volumes.py in quick mode: the code runs and reports what it measured."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_quick_tiling_benchmark_compares_every_scheme(tmp_path):
    import tiling

    result = tiling.measure(str(tmp_path), quick=True)
    rows = {row["scheme"]: row for row in result["rows"]}
    assert set(rows) == {scheme[0] for scheme in tiling.SCHEMES}
    assert rows["overlap-blend 32 px (before)"]["passes_per_slice"] == 3  # 256x512: 1 row of 3 tiles
    assert all(row["passes_per_slice"] == 2 for name, row in rows.items() if "before" not in name)
    assert all(0 <= row["foreground_iou"] <= 1 for row in rows.values())
    report = tiling.render(result)
    assert all(name in report for name in rows)


@pytest.mark.slow
def test_quick_volume_benchmark_scores_labels_and_launches_two_processes(tmp_path):
    import volumes

    result = volumes.measure(str(tmp_path), quick=True)
    assert result["score"]["foreground_iou"] > 0.5 and result["score"]["peak_rss_mib"] > 0
    assert result["labels"]["instances"] > 10
    assert result["slice"]["passes"] == 12
    two = [row for row in result["processes"] if row["processes"] == 2]
    assert len(two) == 1 and len(two[0]["peak_rss_mib_per_process"]) == 2
    assert "| `score`" in volumes.render(result)
