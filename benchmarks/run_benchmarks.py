#!/usr/bin/env python
"""`make bench`: measure prepare, the embedding cache and training steps; write bench.json + BENCHMARKS.md.

Each measurement runs in a fresh process so its peak RSS is its own. `--quick` uses tiny sizes
(the test suite runs it so this script cannot rot); the default uses the full EPFL volume shape
and the ViT-B SAM architecture (random weights: speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_prepare(shape: tuple[int, int, int], workdir: str) -> dict:
    """Seconds and peak RSS of `prepare_dataset` on a synthetic TIFF pair of `shape`."""
    import tifffile

    from sam_mito.data import prepare_dataset
    from sam_mito.synthetic import SyntheticEM

    scene = SyntheticEM(shape, seed=0)
    images, masks = scene.volume()
    tifffile.imwrite(f"{workdir}/training.tif", images, photometric="minisblack")
    tifffile.imwrite(f"{workdir}/training_groundtruth.tif", masks * 255, photometric="minisblack")
    del images, masks
    start = time.perf_counter()
    dataset = prepare_dataset(
        f"{workdir}/patches", images=f"{workdir}/training.tif", masks=f"{workdir}/training_groundtruth.tif"
    )
    return {
        "shape": list(shape),
        "seconds": time.perf_counter() - start,
        "patches": sum(len(s) for s in dataset.values()),
        "peak_rss_mib": _peak_rss_mib(),
    }


def bench_training(size: str, workdir: str, steps: int) -> dict:
    """Seconds per Trainer step, encoder every step (seed style) vs cached embeddings, batch 2."""
    import torch
    from transformers import SamConfig, SamModel, TrainerCallback

    from sam_mito.data import load_patches, prepare_dataset
    from sam_mito.modeling import freeze_for_decoder_training, load_sam, processor_for, tiny_sam_config
    from sam_mito.training import SamMitoConfig, SamMitoTrainer, prompt_dataset

    torch.manual_seed(0)
    config = SamConfig() if size == "vit-b" else tiny_sam_config()
    model_dir = Path(workdir) / "model"
    SamModel(config).save_pretrained(model_dir)
    processor_for(config).save_pretrained(model_dir)
    data_dir = Path(workdir) / "data"
    prepare_dataset(data_dir, synthetic_shape=(5, 256, 512), seed=0)

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times, self.start = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    result = {"architecture": size}
    for cached, n_steps in ((False, max(2, steps // 5)), (True, steps)):
        model, processor = load_sam(str(model_dir))
        freeze_for_decoder_training(model)
        args = SamMitoConfig(
            output_dir=f"{workdir}/out", max_steps=n_steps, per_device_train_batch_size=2, use_cpu=True,
            report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=True,
            embedding_cache=cached, cache_dir=f"{workdir}/cache",
        )  # fmt: skip
        split = load_patches(data_dir, "train")
        start = time.perf_counter()
        dataset = prompt_dataset(model, processor, split, args, name="train")
        build = time.perf_counter() - start
        timer = StepTimes()
        SamMitoTrainer(model=model, args=args, train_dataset=dataset, callbacks=[timer]).train()
        steady = timer.times[1:] or timer.times
        key = "cached" if cached else "seed_style"
        result[key] = {"min_s": min(steady), "median_s": statistics.median(steady), "steps": len(steady)}
        if cached:
            result["cache_build_seconds"] = build
            result["cache_patches"] = len(dataset)
            result["cache_bytes_per_patch"] = dataset.embeddings.bytes_per_item
    result["speedup_median"] = result["seed_style"]["median_s"] / result["cached"]["median_s"]
    result["peak_rss_mib"] = _peak_rss_mib()
    return result


def _isolated(function, *args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def render(results: dict) -> str:
    """BENCHMARKS.md text from the measured results."""
    prep, train = results["prepare"], results["training"]
    return f"""# Benchmarks

Measured by `make bench` ({"quick mode, tiny sizes" if results["quick"] else "full sizes"}) on
{results["machine"]}, {results["date"]}; torch {results["torch"]}, transformers {results["transformers"]}.
Reproduce with `make bench` (writes `bench.json` and this file).

## Prepare

Synthetic {"×".join(map(str, prep["shape"]))} volume pair from TIFF: {prep["seconds"]:.1f} s,
{prep["patches"]} patches, peak RSS {prep["peak_rss_mib"]:.0f} MiB (target < 60 s, < 3 GiB).

## Training step, batch 2, through the Trainer ({train["architecture"]})

| path | min s/step | median s/step | steps |
|---|---|---|---|
| seed style (encoder every step) | {train["seed_style"]["min_s"]:.3f} | {train["seed_style"]["median_s"]:.3f} | {train["seed_style"]["steps"]} |
| cached embeddings | {train["cached"]["min_s"]:.4f} | {train["cached"]["median_s"]:.4f} | {train["cached"]["steps"]} |

Speed-up (median): {train["speedup_median"]:.0f}×. Building the cache for {train["cache_patches"]} patches took
{train["cache_build_seconds"]:.1f} s; {train["cache_bytes_per_patch"] / 2**20:.2f} MiB per patch on disk
(target ≤ 2 MiB); peak RSS {train["peak_rss_mib"]:.0f} MiB.

Not measured yet: the fast encode path against stock fp32 at ViT-B size, and full-slice prediction.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds (used by the tests)")
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--json", default="bench.json")
    args = parser.parse_args(argv)
    import torch
    import transformers

    with tempfile.TemporaryDirectory() as prep_dir, tempfile.TemporaryDirectory() as train_dir:
        shape = (6, 256, 512) if args.quick else (165, 768, 1024)
        results = {
            "quick": args.quick,
            "machine": f"{platform.processor() or platform.machine()}, {multiprocessing.cpu_count()} cores",
            "date": date.today().isoformat(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "prepare": _isolated(bench_prepare, shape, prep_dir),
            "training": _isolated(
                bench_training, "tiny" if args.quick else "vit-b", train_dir, 5 if args.quick else 20
            ),
        }
    Path(args.json).write_text(json.dumps(results, indent=2))
    Path(args.out).write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
