"""`benchmarks/families.py` in quick mode: every family runs every part and the report shows it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
        assert row["slice"]["encoder_passes"] == 20 and row["slice"]["seconds"] > 0
    assert rows["sam"]["encoder_speedup_vs_sam"] == 1
    assert f"| {rows['sam2']['title']} (tiny test config) |" in result.stdout
