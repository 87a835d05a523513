"""`make bench` in quick mode: the benchmark code runs and reports what it measured."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
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
    report = (tmp_path / "B.md").read_text()
    assert f"{training['speedup_median']:.0f}×" in report
    encoder = measured["encoder"]
    assert encoder["gflop_per_image"] > 0 and encoder["matmul_peak_gflops"] > 0
    paths = {row["path"]: row for row in encoder["paths"]}
    assert paths["sam-mito encode, fp32 (SDPA)"]["relative_error"] < 1e-5  # the same math as stock
    assert 0 < paths["sam-mito encode, bf16 autocast"]["relative_error"] < 0.05  # bf16 rounds
    assert all(row["median_s"] > 0 for row in encoder["paths"])
    assert all(row["path"] in report for row in encoder["paths"])
    auto = encoder["auto"]
    assert encoder["paths"][-1]["path"] == f"sam-mito encode, auto (picked {auto['precision']} here)"
    assert auto["check_s"] >= 0
    assert auto["precision"] == "fp32" or auto["bf16_relative_error"] <= auto["limit"]
    cache, cache_fp32 = measured["cache"], measured["cache_fp32"]
    assert cache["patches"] == 4 and cache["peak_rss_mib"] >= cache["rss_before_mib"] > 0
    assert (cache["requested"], cache_fp32["requested"], cache_fp32["precision"]) == ("auto", "fp32", "fp32")
    assert cache["seconds_per_patch"] > 0 and cache_fp32["seconds_per_patch"] > 0
    assert f"under `auto`, which picked **{cache['precision']}**" in report
    predict = measured["predict"]
    assert predict["encoder_passes"] == predict["tiles"] == 12 and predict["seconds"] > 0
    assert predict["precision"] in ("fp32", "bf16")
    assert [run["shape"] for run in measured["stream"]] == [[2, 256, 384], [6, 256, 384]]
    rerun = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_benchmarks.py"), "--quick", "--only", "prepare",
         "--out", str(tmp_path / "B.md"), "--json", str(tmp_path / "b.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["training"] == measured["training"] and again["stream"] == measured["stream"]
    assert again["prepare"]["seconds"] != measured["prepare"]["seconds"]  # re-measured


@pytest.mark.slow
def test_iou_head_bench_quick_scores_the_base_and_each_recipe(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("iou_head", ROOT / "benchmarks" / "iou_head.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(str(tmp_path), quick=True)
    assert set(result["recipes"]) == set(bench.RECIPES)
    for scores in [result["base"], *result["recipes"].values()]:
        assert scores["boxes"] == scores["patches"] > 0  # one union box per held-out patch
        assert 0 <= scores["dice_best_by_iou_scores"] <= scores["dice_oracle_best_of_3"] <= 1
        assert -1 <= scores["pearson_single"] <= 1
    report = bench.render(result)
    assert "Pearson r" in report and f"{result['base']['dice_single']:.3f}" in report
