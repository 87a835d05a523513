"""`make bench` in quick mode: the benchmark code runs and reports what it measured."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_bench(tmp_path, *options):
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_benchmarks.py"), "--quick", *options,
         "--out", str(tmp_path / "B.md"), "--json", str(tmp_path / "b.json")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.mark.slow
def test_quick_bench_writes_json_and_markdown(tmp_path):
    result = _run_bench(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads((tmp_path / "b.json").read_text())
    assert measured["prepare"]["patches"] > 0 and measured["prepare"]["seconds"] > 0
    training = measured["training"]
    assert training["cached"]["median_s"] > 0 and training["seed_style"]["median_s"] > 0
    assert training["seed_style"]["steps"] == 2  # every seed-style step counted: the cache build warmed up
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
    assert auto["path"] in paths and f"{auto['path']} (**`auto` picked this**)" in report
    assert auto["check_s"] >= 0
    assert auto["precision"] == "fp32" or auto["bf16_relative_error"] <= auto["limit"]
    # the cache is built once, by the cached training run, under the default precision auto
    cache = training["cache"]
    assert cache["patches"] == 4 and cache["peak_rss_mib"] >= cache["rss_before_mib"] > 0
    assert cache["bytes_per_patch"] == 64 * 16 * 16 * 2  # the tiny model's embeddings, fp16
    assert cache["requested"] == "auto" and cache["precision"] in ("fp32", "bf16")
    assert f"under\n`auto`, which picked **{cache['precision']}**" in report
    predict = measured["predict"]
    assert predict["encoder_passes"] == predict["tiles"] == 12 and predict["seconds"] > 0
    assert predict["precision"] in ("fp32", "bf16")
    assert "slice" not in measured["volumes"]  # measured once, by the predict group
    # the families table's SAM row is the pipeline groups' measurements, not measured again
    sam, *others = measured["families"]["families"]
    assert sam["family"] == "sam"
    assert {part: sam[part]["from"] for part in ("encoder", "cache", "training", "slice")} == {
        "encoder": "encoder", "cache": "training", "training": "training", "slice": "predict"
    }  # fmt: skip
    assert sam["slice"]["seconds"] == predict["seconds"]
    assert sam["encoder"]["median_s"] == paths["sam-mito encode, fp32 (SDPA)"]["median_s"]
    assert sam["cache"]["mib_per_patch"] * 2**20 == cache["bytes_per_patch"]
    assert sam["training"]["median_s"] == training["cached"]["median_s"]
    for row in others:  # the other families are measured here, at the same defaults
        assert all("from" not in row[part] for part in ("encoder", "cache", "training", "slice"))
        assert row["slice"]["encoder_passes"] == 12
    assert "† Measured once" in report
    # every group's wall time, and their total, at the end of the report
    groups = ["training", "encoder", "prepare", "predict", "cli", "tiling", "zcontext", "volumes", "iou_head",
              "families", "cache_verify", "ddp", "gpu", "shortstacks", "instances", "measure"]  # fmt: skip
    timings = measured["timings"]
    assert list(timings) == groups and all(t["seconds"] > 0 for t in timings.values())
    total = sum(t["seconds"] for t in timings.values())
    assert measured["run_seconds"] >= total
    table = report[report.index("Time per group") :]
    assert all(f"| {name} | {timings[name]['seconds']:.0f} |" in table for name in groups)
    assert f"| **total** | **{total:.0f}** |" in table
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert [h.split(".")[0] for h in headings] == [f"## {n}" for n in range(1, len(headings) + 1)]
    assert headings[-1] == f"## {len(headings)}. Time per group"

    rerun = _run_bench(tmp_path, "--only", "prepare")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["training"] == measured["training"] and again["families"] == measured["families"]
    assert again["prepare"]["seconds"] != measured["prepare"]["seconds"]  # re-measured
    assert again["timings"]["training"] == timings["training"]
    assert again["timings"]["prepare"] != timings["prepare"]
    assert "run_seconds" not in again  # no longer one whole run
    assert "No whole run recorded" in (tmp_path / "B.md").read_text()


@pytest.mark.slow
def test_iou_head_bench_quick_scores_the_base_and_each_recipe_at_each_size(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports the benchmarks' `common`
    spec = importlib.util.spec_from_file_location("iou_head", ROOT / "benchmarks" / "iou_head.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(str(tmp_path), quick=True)
    runs = result["runs"]
    assert [run["recipe"] for run in runs] == list(bench.RECIPES) * 2
    assert runs[0]["train_patches"] < runs[-1]["train_patches"]  # a coarse and a fine cut
    for scores in [result["base"], *runs]:
        assert (
            scores["boxes"] == scores["patches"] == result["held_out_patches"] > 0
        )  # the same held-out boxes
        assert 0 <= scores["dice_best_by_iou_scores"] <= scores["dice_oracle_best_of_3"] <= 1
        assert scores["pearson_single"] != scores["pearson_single"] or -1 <= scores["pearson_single"] <= 1
        has_torchvision = importlib.util.find_spec("torchvision") is not None
        assert (scores.get("pipeline") is not None) == has_torchvision
    report = bench.render(result)
    assert "Pearson r" in report and f"{result['base']['dice_single']:.3f}" in report
    assert ("needs torchvision" in report) == (importlib.util.find_spec("torchvision") is None)


def test_a_fresh_process_reports_its_own_peak_rss_not_its_parents():
    # Linux carries getrusage's ru_maxrss over fork + exec: a small process started by a 600 MiB one
    # would report 600 MiB. The benchmarks' peak RSS must be the new process's own.
    child = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
        "from common import peak_rss_mib; print(peak_rss_mib())"
    )
    parent = (
        "import subprocess, sys; held = bytearray(600 * 2**20); held[::4096] = b'x' * len(held[::4096]); "
        f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True).stdout)"
    )
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 0 < float(result.stdout) < 300
