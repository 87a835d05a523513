#!/usr/bin/env python
"""Whole volumes: scoring and labelling larger than memory, encoder passes per slice, 1 vs 2 processes.

- ``score`` and ``predict --labels`` (the labelling step) on a synthetic zarr volume of
  192×4096×4096 uint8 (3 GiB uncompressed): seconds and peak RSS, each in a fresh process.
- Encoder passes and seconds per 768×1024 slice with the ViT-B architecture (random weights:
  speed does not depend on them), at the default tiling.
- The tiny model over a synthetic stack, 1 process vs 2 (``accelerate launch`` on gloo CPU
  processes): wall time and peak RSS per process at two depths.

``--quick`` (and ``measure(workdir, quick=True)``) runs the same code at small sizes. Run alone:
``python benchmarks/volumes.py [--quick]``.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _isolated(function, *args) -> dict:
    """Run ``function(*args)`` in a fresh process, so its peak RSS is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def _balls(
    shape: tuple[int, int, int], z: int, *, shift: int = 0, spacing: int = 64, radius: int = 20
) -> np.ndarray:
    """Slice ``z`` of a lattice of balls (``shift`` moves them in x): a mask with many 3D instances."""
    _, height, width = shape
    y = (np.arange(height) % spacing - spacing // 2)[:, None]
    x = ((np.arange(width) - shift) % spacing - spacing // 2)[None, :]
    dz = (z + spacing // 2) % spacing - spacing // 2  # slice 0 cuts through the balls' centres
    return ((y * y + x * x + dz * dz) <= radius * radius).astype(np.uint8)


def make_volumes(workdir: str, shape: tuple[int, int, int]) -> tuple[str, str]:
    """Write a truth and a prediction (the truth's balls shifted 4 px) as OME-Zarr masks, slice by slice."""
    from sam_mito.omezarr import create_image

    paths = []
    for name, shift in (("truth", 0), ("prediction", 4)):
        path = f"{workdir}/{name}.zarr"
        array = create_image(path, shape, np.uint8)
        for z in range(shape[0]):
            array[z] = _balls(shape, z, shift=shift) * 255
        paths.append(path)
    return paths[0], paths[1]


def bench_score(truth: str, prediction: str) -> dict:
    from sam_mito.scoring import score_volumes

    start = time.perf_counter()
    scores = score_volumes(prediction, truth)
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": _peak_rss_mib(),
        "foreground_iou": scores["foreground_iou"],
        "instance_f1": scores["instance_f1"],
    }


def bench_labels(prediction: str, labels: str) -> dict:
    from sam_mito.instances import label_mask
    from sam_mito.volumes import open_volume

    start = time.perf_counter()
    summary = label_mask(open_volume(prediction), labels)
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": _peak_rss_mib(),
        "instances": summary["instances"],
    }


def bench_slice(size: str, workdir: str) -> dict:
    """Encoder passes and seconds for one 768×1024 slice at the default tiling."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import model_dir as _model_dir

    from sam_mito.inference import Segmenter
    from sam_mito.modeling import load_sam
    from sam_mito.synthetic import SyntheticEM

    image, _ = SyntheticEM((1, 768, 1024), seed=3).render(0)
    segmenter = Segmenter(*load_sam(str(_model_dir(size, workdir))), tile=256)
    start = time.perf_counter()
    segmenter.probabilities(image)
    return {
        "model": size,
        "passes": segmenter.encoder_passes,
        "seconds": time.perf_counter() - start,
        "overlap": segmenter.overlap,
        "halo": segmenter.halo,
        "precision": segmenter.resolution.precision,
    }


_RSS_SCRIPT = """import resource, sys
from sam_mito.cli import main
status = main(sys.argv[1:])
print("PEAK_RSS_MIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)
sys.exit(status)
"""


def bench_processes(workdir: str, shape: tuple[int, int, int], processes: int) -> dict:
    """Wall time and each process's peak RSS of ``predict`` of a synthetic stack into zarr."""
    import tifffile

    from sam_mito.modeling import TINY_BASE
    from sam_mito.synthetic import synthetic_volume

    folder = Path(workdir) / f"procs-{shape[0]}-{processes}"
    folder.mkdir()
    stack = folder / "stack.tif"
    with tifffile.TiffWriter(stack) as writer:  # written in slabs: the stack need not fit in memory
        for start in range(0, shape[0], 8):
            images, _ = synthetic_volume((min(8, shape[0] - start), *shape[1:]), seed=start)
            for image in images:
                writer.write(image, contiguous=True, photometric="minisblack")
    (folder / "run.py").write_text(_RSS_SCRIPT)
    args = ["predict", "--model", TINY_BASE, "--input", str(stack), "--output", str(folder / "mask.zarr")]
    if processes == 1:
        command = [sys.executable, str(folder / "run.py"), *args]
    else:
        config = ROOT / "examples" / "accelerate_configs" / "cpu_2proc.yaml"
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
        command += [
            "--num_processes",
            str(processes),
            "--main_process_port",
            "29547",
            str(folder / "run.py"),
            *args,
        ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    rss = [float(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("PEAK_RSS_MIB")]
    return {"slices": shape[0], "processes": processes, "seconds": seconds, "peak_rss_mib_per_process": rss}


def measure(workdir: str, quick: bool) -> dict:
    """Every measurement of this module (quick: small sizes, tiny model)."""
    big = (8, 512, 512) if quick else (192, 4096, 4096)
    truth, prediction = make_volumes(workdir, big)
    result = {
        "volume_shape": list(big),
        "volume_gib": float(np.prod(big)) / 2**30,
        "score": _isolated(bench_score, truth, prediction),
        "labels": _isolated(bench_labels, prediction, f"{workdir}/labels.zarr"),
        "slice": _isolated(bench_slice, "tiny" if quick else "vit-b", workdir),
    }
    stack = (2, 256, 384) if quick else (165, 768, 1024)
    depths = [stack[0]] if quick else [16, stack[0]]
    result["processes"] = [
        bench_processes(workdir, (depth, *stack[1:]), processes) for depth in depths for processes in (1, 2)
    ]
    return result


def render(result: dict) -> str:
    """The measurements as a markdown section."""
    z, h, w = result["volume_shape"]
    score, labels, one = result["score"], result["labels"], result["slice"]
    lines = [
        "## Whole volumes",
        "",
        f"Synthetic zarr masks of {z}×{h}×{w} uint8 ({result['volume_gib']:.2f} GiB uncompressed each), "
        "each step in a fresh process:",
        "",
        "| step | seconds | peak RSS (MiB) |",
        "|---|---|---|",
        f"| `score` (prediction vs truth, 3D instances of both) | {score['seconds']:.1f} | {score['peak_rss_mib']:.0f} |",
        f"| `predict --labels` labelling ({labels['instances']} instances) | {labels['seconds']:.1f} | "
        f"{labels['peak_rss_mib']:.0f} |",
        "",
        f"One 768×1024 slice, {one['model']} model, default tiling (tile 256, overlap {one['overlap']}, "
        f"context margin {one['halo']} px, {one['precision']}): {one['passes']} encoder passes, "
        f"{one['seconds']:.1f} s.",
        "",
        "| slices | processes | wall s | ratio to 1 process | peak RSS per process (MiB) |",
        "|---|---|---|---|---|",
    ]
    single = {row["slices"]: row["seconds"] for row in result["processes"] if row["processes"] == 1}
    for row in result["processes"]:
        rss = ", ".join(f"{r:.0f}" for r in row["peak_rss_mib_per_process"])
        ratio = row["seconds"] / single[row["slices"]]
        lines.append(f"| {row['slices']} | {row['processes']} | {row['seconds']:.1f} | {ratio:.2f} | {rss} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        print(render(measure(tmp, quick)))
