"""The GPU row: ViT-B encoder seconds per image (fp32, bf16), the cached training step, and a 768×1024
slice through ``sam-mito predict`` on one process, on the first CUDA device. Without CUDA the group
records that it was skipped and renders one line."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import model_dir, timed


def _synchronized(run):
    import torch

    def call():
        output = run()
        torch.cuda.synchronize()
        return output

    return call


def _encoder(size: str, workdir: str, repeats: int) -> dict:
    import torch

    from sam_mito.data.synthetic import SyntheticEM
    from sam_mito.features.encoding import encode, pixel_values
    from sam_mito.models.loading import load_sam

    torch.set_grad_enabled(False)
    model, processor = load_sam(str(model_dir(size, workdir)), device="cuda")
    image, _ = SyntheticEM((1, 256, 256), seed=0).render(0)
    pixels = pixel_values(processor, [image]).cuda()
    seconds = {}
    for precision in ("fp32", "bf16"):
        run = _synchronized(lambda precision=precision: encode(model, pixels, precision=precision))
        run()  # warm-up: kernels, autotuning
        seconds[precision] = statistics.median(timed(run)[0] for _ in range(repeats))
    return {"input": list(pixels.shape), "repeats": repeats, "seconds": seconds}


def _predict_slice(size: str, workdir: str) -> dict:
    import tifffile

    from sam_mito.data.synthetic import SyntheticEM

    image, _ = SyntheticEM((1, 768, 1024), seed=2).render(0)
    folder = Path(workdir)
    tifffile.imwrite(folder / "slice.tif", image)
    command = [
        sys.executable, "-m", "sam_mito", "predict", "--model", str(model_dir(size, workdir)),
        "--input", str(folder / "slice.tif"), "--out", str(folder / "mask.tif"), "--device", "cuda",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return {
        "slice": [768, 1024],
        "seconds": time.perf_counter() - start,
        "command": "sam-mito predict --device cuda",
    }


def measure(workdir: str, quick: bool) -> dict:
    """The GPU figures, or ``{"skipped": reason}`` when torch sees no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    import pipeline

    size = "tiny" if quick else "vit-b"
    training = pipeline.bench_training(size, workdir, 5 if quick else 20, 2)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "architecture": size,
        "encoder": _encoder(size, workdir, 3 if quick else 10),
        "cached_step_s": training["cached"]["median_s"],
        "predict": _predict_slice(size, workdir),
    }


def render(result: dict) -> str:
    """Markdown section: one table row for the GPU, or the line saying the group was skipped."""
    if "skipped" in result:
        return f"## GPU\n\nSkipped: {result['skipped']}. The row fills in when `make bench` runs with CUDA.\n"
    encoder = result["encoder"]["seconds"]
    return (
        "## GPU\n\n"
        f"{result['gpu']}, {result['architecture']} with random weights; medians of "
        f"{result['encoder']['repeats']} encoder runs after a warm-up.\n\n"
        "| GPU | encoder fp32, s/image | encoder bf16, s/image | cached step, batch 2 | 768×1024 slice, `sam-mito predict` |\n"
        "|---|---|---|---|---|\n"
        f"| {result['gpu']} | {encoder['fp32']:.3f} | {encoder['bf16']:.3f} | {result['cached_step_s']:.3f} s | "
        f"{result['predict']['seconds']:.1f} s (whole command, model load included) |\n"
    )
