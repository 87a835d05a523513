"""benchmarks/tiling.py and benchmarks/volumes.py in quick mode: the code runs and reports what it measured."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


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
    assert "slice" not in result  # ViT-B's slice is the predict group's
    assert [(row["slices"], row["processes"]) for row in result["processes"]] == volumes.QUICK_RUNS
    two = [row for row in result["processes"] if row["processes"] == 2]
    assert len(two) == 1 and len(two[0]["peak_rss_mib_per_process"]) == 2
    report = volumes.render(result)
    assert "| `score --labels`" in report and "Target ≤ 1024 MiB each: met" in report


def test_full_volume_benchmark_sizes_are_the_issues():
    import volumes

    assert np.prod(volumes.VOLUME) >= 3 * 2**30  # at least 3 GiB of uint8
    assert volumes.STACK_SLICE == (768, 1024)
    assert sorted(volumes.RUNS) == [(16, 1), (165, 1), (165, 2)]  # 1 vs 2 processes; RSS at 16 and 165


def test_ball_lattice_slices():
    import volumes

    # slice 0 cuts through the balls' centres, at (32, 32) + multiples of 64; radius 20
    mask = volumes._balls((1, 100, 150), 0)
    assert mask.shape == (100, 150) and mask.dtype == np.uint8
    assert mask[32, 32] == mask[32, 52] == mask[32, 96] == mask[96, 32] == 1
    assert mask[32, 53] == mask[32, 11] == mask[0, 0] == 0
    assert mask[32].sum() == 41 * 2 + len(range(140, 150))  # two whole balls, then the third one cut
    shifted = volumes._balls((1, 100, 150), 0, shift=4)
    assert (shifted[:, 4:] == mask[:, :-4]).all()  # moved 4 px in x
    # 20 slices away from the centres only the balls' poles remain: one pixel each
    assert volumes._balls((1, 128, 128), 20).sum() == 4
