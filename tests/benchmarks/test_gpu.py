"""The GPU bench group: without CUDA it records the skip and renders one line saying so."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu  # noqa: E402


def test_without_cuda_the_gpu_group_is_skipped_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = gpu.measure(str(tmp_path), quick=True)
    assert result == {"skipped": "no CUDA device on this machine"}
    assert gpu.render(result).strip().splitlines()[-1].startswith("Skipped: no CUDA device on this machine.")
    assert list(tmp_path.iterdir()) == []


def test_a_measured_row_names_the_gpu_and_every_figure():
    result = {
        "gpu": "NVIDIA H200", "architecture": "vit-b",
        "encoder": {"input": [1, 3, 1024, 1024], "repeats": 10, "seconds": {"fp32": 0.051, "bf16": 0.018}},
        "cached_step_s": 0.012, "predict": {"slice": [768, 1024], "seconds": 9.4},
    }  # fmt: skip
    row = gpu.render(result).strip().splitlines()[-1]
    assert row == "| NVIDIA H200 | 0.051 | 0.018 | 0.012 s | 9.4 s (whole command, model load included) |"
