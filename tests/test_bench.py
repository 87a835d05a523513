"""`make bench` in quick mode: the benchmark code runs and reports what it measured."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_writes_json_and_markdown(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_benchmarks.py"), "--quick",
         "--out", str(tmp_path / "B.md"), "--json", str(tmp_path / "b.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads((tmp_path / "b.json").read_text())
    assert measured["prepare"]["patches"] > 0 and measured["prepare"]["seconds"] > 0
    training = measured["training"]
    assert training["cached"]["median_s"] > 0 and training["seed_style"]["median_s"] > 0
    assert training["cache_bytes_per_patch"] == 64 * 16 * 16 * 2
    assert f"{training['speedup_median']:.0f}×" in (tmp_path / "B.md").read_text()
