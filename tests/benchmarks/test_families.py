"""`benchmarks/families.py` in quick mode: every family runs every part and the report shows it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_family_bench_measures_every_family(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "families.py"), "--quick", "--json", str(tmp_path / "f.json")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads((tmp_path / "f.json").read_text())
    rows = {row["family"]: row for row in measured["families"]}
    assert list(rows) == ["sam", "sam_hq", "sam2"]
    # Tiny models, fp16 rows: SAM 64x16x16; SAM-HQ twice that (+ a 16x16x64 ViT block output);
    # SAM 2.1 8x64x64 + 16x32x32 + 64x16x16.
    expected_bytes = {"sam": 64 * 256 * 2, "sam_hq": 2 * 64 * 256 * 2, "sam2": (32768 + 16384 + 16384) * 2}
    for family, row in rows.items():
        assert row["cache"]["mib_per_patch"] * 2**20 == expected_bytes[family]
        assert row["encoder"]["median_s"] > 0 and row["training"]["median_s"] > 0
        # predicted as `sam-mito predict` does by default: 12 passes a 768x1024 slice, precision auto
        assert row["slice"]["encoder_passes"] == 12 and row["slice"]["seconds"] > 0
        assert row["slice"]["precision"] in ("fp32", "bf16")
        assert all("from" not in row[part] for part in ("encoder", "cache", "training", "slice"))
    assert rows["sam"]["encoder_speedup_vs_sam"] == 1
    assert f"| {rows['sam2']['title']} (tiny test config) |" in result.stdout
    assert "†" not in result.stdout  # run alone, it measures every part itself


def test_parts_measured_elsewhere_are_copied_not_measured(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import families

    known = {
        "encoder": {"input": [1, 3, 64, 64], "min_s": 1.5, "median_s": 2.5, "repeats": 2, "from": "encoder"},
        "cache": {"patches": 4, "mib_per_patch": 0.25, "seconds_per_patch": 0.5, "from": "training"},
        "training": {"min_s": 0.1, "median_s": 0.2, "steps": 3, "from": "training"},
        "slice": {"slice": [768, 1024], "seconds": 9.0, "encoder_passes": 12, "precision": "fp32", "from": "predict"},
    }  # fmt: skip
    result = families.measure(str(tmp_path), quick=True, families=("sam",), known={"sam": known})
    (row,) = result["families"]
    assert {part: row[part] for part in known} == known
    assert row["trainable_parameters"] > 0 and row["encoder_parameters"] > 0  # counted without weights
    assert list(tmp_path.iterdir()) == []  # no model saved, no data prepared, nothing encoded
    report = families.render(result)
    assert "2.50 (min 1.50, 2 runs) †" in report and "9.0 (12 passes, fp32) †" in report
    assert "by the `encoder`, `predict`, `training` group(s)" in report


def test_a_copied_part_follows_the_group_that_measured_it():
    # After `make bench --only encoder`, the families table's SAM row must show the new encoder
    # figures (and the other families' speed-ups against them), not the copy made earlier.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import families

    result = {
        "families": [
            {"family": "sam", "encoder": {"median_s": 8.0, "from": "encoder"}, "encoder_speedup_vs_sam": 1.0},
            {"family": "sam2", "encoder": {"median_s": 2.0}, "encoder_speedup_vs_sam": 4.0},
        ]
    }
    fresh = families.with_known(result, {"sam": {"encoder": {"median_s": 10.0, "from": "encoder"}}})
    rows = {row["family"]: row for row in fresh["families"]}
    assert rows["sam"]["encoder"]["median_s"] == 10.0
    assert rows["sam2"]["encoder_speedup_vs_sam"] == 5.0
    assert result["families"][0]["encoder"]["median_s"] == 8.0  # the stored result is left as it was
    measured_here = families.with_known(result, {"sam2": {"encoder": {"median_s": 1.0, "from": "encoder"}}})
    assert measured_here["families"][1]["encoder"]["median_s"] == 2.0  # not a copy: never replaced
