"""Shared helpers of the benchmark groups: timing, RSS, machine description, random models."""

from __future__ import annotations

import multiprocessing
import platform
import resource
import socket
import time
from pathlib import Path


def _status_mib(field: str) -> float | None:
    """A memory field of ``/proc/self/status`` (Linux), MiB; None where there is none."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return None


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB.

    Linux's ``VmHWM``, not ``getrusage``'s ``ru_maxrss``: Linux carries ``ru_maxrss`` over fork and
    exec, so a fresh process started by a big one would report its parent's peak.
    """
    peak = _status_mib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if peak is None else peak


def rss_mib() -> float:
    """This process's resident memory now, MiB."""
    now = _status_mib("VmRSS")
    return float("nan") if now is None else now


def free_port() -> int:
    """A TCP port on localhost that is free now (for a launcher's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(function) -> tuple[float, object]:
    """``(seconds, value)`` of one call."""
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def model_dir(size: str, workdir: str) -> Path:
    """Save a random SAM of ``size`` (ViT-B architecture or the tiny test config) with its processor."""
    import torch
    from transformers import SamConfig, SamModel, SamVisionConfig

    from sam_mito.models.loading import processor_for, tiny_sam_config

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


def predict_slice(model, processor, *, seed: int = 2) -> dict:
    """Prompt-free prediction of one synthetic 768×1024 slice with ``sam-mito predict``'s defaults.

    Default tiling (256-px tiles, each encoded with its context margin) and encoder precision
    ``auto`` (its one-time check on the first tile included in the seconds). Returns the slice shape,
    the tiling, seconds, encoder passes, the precision ``auto`` picked and this process's peak RSS.
    """
    from sam_mito.data.synthetic import SyntheticEM
    from sam_mito.inference.segmenter import Segmenter, tile_origins

    segmenter = Segmenter(model, processor)
    image, _ = SyntheticEM((1, 768, 1024), seed=seed).render(0)
    seconds, _ = timed(lambda: segmenter.probabilities(image))
    height, width = image.shape
    return {
        "slice": [height, width],
        "tile": segmenter.tile,
        "overlap": segmenter.overlap,
        "halo": segmenter.halo,
        "tiles": len(tile_origins(height, segmenter.tile, segmenter.overlap))
        * len(tile_origins(width, segmenter.tile, segmenter.overlap)),
        "seconds": seconds,
        "encoder_passes": segmenter.encoder_passes,
        "precision": segmenter.resolution.precision,
        "peak_rss_mib": peak_rss_mib(),
    }


def machine() -> str:
    """CPU model, core count, the widest vector extension torch dispatches to, and native bf16."""
    import torch

    from sam_mito.features.precision import hardware_bf16

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


def train_tiny_base(output_dir: Path, dataset: Path, cache_dir: Path, **settings) -> None:
    """Fine-tune the packaged tiny base on CPU, quietly: no checkpoints, no evaluation during training.

    ``settings`` are further :class:`sam_mito.training.config.SamMitoConfig` fields (steps, batch size,
    learning rate, ...); the seed is 0 unless given.
    """
    from sam_mito.defaults import TINY_BASE
    from sam_mito.training.config import SamMitoConfig
    from sam_mito.training.trainer import train

    train(
        SamMitoConfig(
            output_dir=str(output_dir),
            model_name_or_path=TINY_BASE,
            dataset=str(dataset),
            embedding_cache_dir=str(cache_dir),
            eval_strategy="no",
            save_strategy="no",
            use_cpu=True,
            report_to="none",
            disable_tqdm=True,
            **{"seed": 0, **settings},
        )
    )


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
