"""Shared helpers of the benchmark groups: timing, RSS, machine description, random models."""

from __future__ import annotations

import multiprocessing
import platform
import resource
import time
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """This process's resident memory now, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(function) -> tuple[float, object]:
    """``(seconds, value)`` of one call."""
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def model_dir(size: str, workdir: str) -> Path:
    """Save a random SAM of ``size`` (ViT-B architecture or the tiny test config) with its processor."""
    import torch
    from transformers import SamConfig, SamModel, SamVisionConfig

    from sam_mito.modeling import processor_for, tiny_sam_config

    torch.manual_seed(0)
    # SAM's own vision initializer (1e-10) makes activations vanish; 0.02 gives realistic magnitudes
    # for the precision comparison. Speed does not depend on the weights.
    config = (
        SamConfig(vision_config=SamVisionConfig(initializer_range=0.02))
        if size == "vit-b"
        else tiny_sam_config()
    )
    model_dir = Path(workdir) / f"model-{size}"
    if not model_dir.exists():
        SamModel(config).save_pretrained(model_dir)
        processor_for(config).save_pretrained(model_dir)
    return model_dir


def machine() -> str:
    """CPU model, core count, the widest vector extension torch dispatches to, and native bf16."""
    import torch

    from sam_mito.precision import hardware_bf16

    cpuinfo = Path("/proc/cpuinfo")
    names = (
        [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        if cpuinfo.exists()
        else []
    )
    name = names[0] if names else platform.processor() or platform.machine()
    bf16 = "native bf16" if hardware_bf16("cpu") else "no native bf16"
    return f"{name}, {multiprocessing.cpu_count()} cores ({torch.backends.cpu.get_cpu_capability()}, {bf16})"


def isolated(function, *args) -> dict:
    """Run ``function(*args)`` in a fresh process, so its peak RSS is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def step_timer():
    """A Trainer callback that records each training step's seconds in its ``times`` list."""
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.start = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    return StepTimes()
