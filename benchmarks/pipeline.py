"""The pipeline's own benchmark groups: training steps, encoder paths, cache, prepare, prediction, streaming.

Models are the ViT-B SAM architecture (or the tiny test config in quick mode) with random
weights: speed does not depend on them.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from common import model_dir, peak_rss_mib, rss_mib, step_timer, timed


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
        "peak_rss_mib": peak_rss_mib(),
    }


def _matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 dense matmul throughput of this machine, GFLOP/s (all threads torch uses)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b))[0] for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def bench_encoder(size: str, workdir: str, repeats: int) -> dict:
    """Seconds per 1024² image (or the tiny input) for each encode path, error vs stock fp32, % of peak.

    The ``auto`` row runs the precision ``auto`` resolved to on this machine; the one-time check that
    resolved it (fp32 and bf16 encodes of the same image) is timed separately.
    """
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sam_mito.embeddings import encode, pixel_values
    from sam_mito.modeling import load_sam
    from sam_mito.precision import MAX_BF16_RELATIVE_ERROR, resolve_precision
    from sam_mito.synthetic import SyntheticEM

    torch.set_grad_enabled(False)
    folder = model_dir(size, workdir)
    stock, processor = load_sam(str(folder))
    eager = type(stock).from_pretrained(folder, attn_implementation="eager")
    image, _ = SyntheticEM((1, 256, 256), seed=0).render(0)
    pixels = pixel_values(processor, [image])
    with FlopCounterMode(display=False) as counter:
        reference = stock.get_image_embeddings(pixels)
    flops = counter.get_total_flops()
    peak = _matmul_gflops()
    check_s, auto = timed(lambda: resolve_precision(stock, pixels, "auto"))
    paths = {
        "stock fp32 get_image_embeddings (transformers default: SDPA attention)": lambda: (
            stock.get_image_embeddings(pixels)
        ),
        "fp32, eager attention (the SAM notebooks' setting)": lambda: eager.get_image_embeddings(pixels),
        "sam-mito encode, fp32 (SDPA)": lambda: encode(stock, pixels, precision="fp32"),
        "sam-mito encode, bf16 autocast": lambda: encode(stock, pixels, precision="bf16"),
        f"sam-mito encode, auto (picked {auto.precision} here)": lambda: encode(
            stock, pixels, precision=auto.precision
        ),
    }
    rows = []
    for name, run in paths.items():
        times, output = [], None
        for _ in range(repeats):
            seconds, output = timed(run)
            times.append(seconds)
        error = float(
            np.linalg.norm((output.float() - reference).numpy()) / np.linalg.norm(reference.numpy())
        )
        median = statistics.median(times)
        rows.append(
            {"path": name, "min_s": min(times), "median_s": median, "relative_error": error,
             "percent_of_matmul_peak": 100 * flops / median / (peak * 1e9)}
        )  # fmt: skip
    stock_median = rows[0]["median_s"]
    for row in rows:
        row["speedup_vs_stock"] = stock_median / row["median_s"]
    return {
        "architecture": size,
        "input": list(pixels.shape),
        "gflop_per_image": flops / 1e9,
        "matmul_peak_gflops": peak,
        "repeats": repeats,
        "paths": rows,
        "auto": {
            "precision": auto.precision,
            "bf16_relative_error": auto.bf16_relative_error,
            "limit": MAX_BF16_RELATIVE_ERROR,
            "check_s": check_s,
        },
    }


def bench_cache(size: str, workdir: str, patches: int, precision: str) -> dict:
    """Peak RSS and time while building the embedding cache of ``patches`` patches (default batch size).

    Under ``auto`` the time includes the one-time precision check on the first patch.
    """
    from sam_mito.config import SamMitoConfig
    from sam_mito.data import load_patches, prepare_dataset
    from sam_mito.embeddings import build_cache
    from sam_mito.modeling import load_sam

    model, processor = load_sam(str(model_dir(size, workdir)))
    data_dir = Path(workdir) / "cache-data"
    if not data_dir.exists():  # the auto and fp32 runs encode the same patches
        prepare_dataset(data_dir, synthetic_shape=(8, 512, 512), seed=1)
    split = load_patches(data_dir, "train").select(range(patches))
    batch_size = SamMitoConfig.__dataclass_fields__["encode_batch_size"].default
    before = rss_mib()
    options = {"cache_dir": f"{workdir}/cache-{precision}", "precision": precision, "batch_size": batch_size}
    seconds, cache = timed(lambda: build_cache(model, processor, split, name="bench", **options))
    return {
        "architecture": size,
        "requested": precision,
        "precision": cache.metadata["precision"],
        "bf16_relative_error": cache.metadata["bf16_relative_error"],
        "patches": len(cache),
        "batch_size": batch_size,
        "seconds_per_patch": seconds / len(cache),
        "rss_before_mib": before,
        "peak_rss_mib": peak_rss_mib(),
        "bytes_per_patch": cache.bytes_per_item,
    }


def bench_predict(size: str, workdir: str) -> dict:
    """Prompt-free (tile) prediction of one 768×1024 slice: seconds, encoder passes, peak RSS."""
    from sam_mito.inference import Segmenter, tile_origins
    from sam_mito.modeling import load_sam
    from sam_mito.synthetic import SyntheticEM

    segmenter = Segmenter(*load_sam(str(model_dir(size, workdir))), mode="tile", tile=256)  # the defaults
    image, _ = SyntheticEM((1, 768, 1024), seed=2).render(0)
    seconds, _ = timed(lambda: segmenter.probabilities(image))
    return {
        "architecture": size,
        "slice": list(image.shape),
        "tile": segmenter.tile,
        "overlap": segmenter.overlap,
        "halo": segmenter.halo,
        "tiles": len(tile_origins(768, 256, segmenter.overlap))
        * len(tile_origins(1024, 256, segmenter.overlap)),
        "seconds": seconds,
        "encoder_passes": segmenter.encoder_passes,
        "precision": segmenter.resolution.precision,
        "peak_rss_mib": peak_rss_mib(),
    }


def bench_stream(workdir: str, depth: int, height: int, width: int) -> dict:
    """Peak RSS of `predict_stack` streaming a ``depth``-slice TIFF with the tiny model (cheap encoder)."""
    import tifffile

    from sam_mito.inference import Segmenter, predict_stack
    from sam_mito.modeling import load_sam
    from sam_mito.synthetic import SyntheticEM

    stack = Path(workdir) / f"stack-{depth}.tif"
    scene = SyntheticEM((depth, height, width), seed=3)
    with tifffile.TiffWriter(stack) as writer:
        for z in range(depth):
            writer.write(scene.render(z)[0], contiguous=True)
    segmenter = Segmenter(*load_sam(str(model_dir("tiny", workdir))), tile=256, overlap=32)
    before = rss_mib()
    seconds, shape = timed(lambda: predict_stack(segmenter, stack, Path(workdir) / f"pred-{depth}.tif"))
    return {
        "shape": list(shape),
        "seconds": seconds,
        "rss_before_mib": before,
        "peak_rss_mib": peak_rss_mib(),
    }


def bench_training(size: str, workdir: str, steps: int) -> dict:
    """Seconds per Trainer step, encoder every step (seed style) vs cached embeddings, batch 2."""
    from sam_mito.config import SamMitoConfig
    from sam_mito.data import load_patches, prepare_dataset
    from sam_mito.modeling import freeze_for_decoder_training, load_sam
    from sam_mito.prompt_data import prompt_dataset
    from sam_mito.training import SamMitoTrainer

    folder = model_dir(size, workdir)
    data_dir = Path(workdir) / "data"
    prepare_dataset(data_dir, synthetic_shape=(5, 256, 512), seed=0)

    result = {"architecture": size}
    for cached, n_steps in ((False, max(2, steps // 4)), (True, steps)):
        model, processor = load_sam(str(folder))
        freeze_for_decoder_training(model)
        args = SamMitoConfig(
            output_dir=f"{workdir}/out", max_steps=n_steps, per_device_train_batch_size=2, use_cpu=True,
            report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=True,
            embedding_cache=cached, embedding_cache_dir=f"{workdir}/cache",
        )  # fmt: skip
        split = load_patches(data_dir, "train")
        start = time.perf_counter()
        dataset = prompt_dataset(model, processor, split, args, name="train")
        build = time.perf_counter() - start
        timer = step_timer()
        SamMitoTrainer(model=model, args=args, train_dataset=dataset, callbacks=[timer]).train()
        steady = timer.times[1:] or timer.times
        key = "cached" if cached else "seed_style"
        result[key] = {"min_s": min(steady), "median_s": statistics.median(steady), "steps": len(steady)}
        if cached:
            result["cache_build_seconds"] = build
            result["cache_patches"] = len(dataset)
            result["cache_bytes_per_patch"] = dataset.embeddings.bytes_per_item
    result["speedup_median"] = result["seed_style"]["median_s"] / result["cached"]["median_s"]
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _picked(choice: dict) -> str:
    """What ``auto`` picked, with the bf16 error it measured (none without native bf16)."""
    error = choice["bf16_relative_error"]
    checked = f"bf16 relative error {error:.2e}" if error is not None else "no native bf16, not checked"
    return f"**{choice['precision']}** ({checked})"


def render_training(results: dict) -> str:
    """Markdown: seed-style vs cached Trainer steps."""
    train = results["training"]
    return f"""## Training step, batch 2, through the Trainer

| path | min s/step | median s/step | steps |
|---|---|---|---|
| seed style (encoder every step) | {train["seed_style"]["min_s"]:.3f} | {train["seed_style"]["median_s"]:.3f} | {train["seed_style"]["steps"]} |
| cached embeddings | {train["cached"]["min_s"]:.4f} | {train["cached"]["median_s"]:.4f} | {train["cached"]["steps"]} |

Speed-up: {train["speedup_median"]:.0f}× median over median, {train["seed_style"]["min_s"] / train["cached"]["min_s"]:.0f}× min over min
(target ≥ 80×; seed-style steps vary by tens of percent between runs on this shared machine).
Peak RSS {train["peak_rss_mib"]:.0f} MiB.
"""


def render_encoder(results: dict) -> str:
    """Markdown: encode paths vs stock fp32, and what precision ``auto`` picked."""
    enc = results["encoder"]
    rows = "\n".join(
        f"| {r['path']} | {r['min_s']:.2f} | {r['median_s']:.2f} | {r['speedup_vs_stock']:.2f}× | "
        f"{r['relative_error']:.2e} | {r['percent_of_matmul_peak']:.0f}% |"
        for r in enc["paths"]
    )
    return f"""## Encoder, one image of input {"×".join(map(str, enc["input"][-2:]))}

{enc["gflop_per_image"]:.3g} GFLOP per image (counted with `torch.utils.flop_counter`); this
machine's best fp32 dense matmul: {enc["matmul_peak_gflops"]:.0f} GFLOP/s. {enc["repeats"]} repeats per path; error is
the relative L2 difference from the stock fp32 embeddings.

| path | min s | median s | speed vs stock | relative error | % of matmul peak |
|---|---|---|---|---|---|
{rows}

Encoder precision `auto` (the default) picked {_picked(enc["auto"])} on this machine; its one-time
check (one fp32 and one bf16 encode; bf16 is kept if within {enc["auto"]["limit"]:.0%} of fp32) took {enc["auto"]["check_s"]:.2f} s.
"""


def render_cache(results: dict) -> str:
    """Markdown: cache size per patch, build time and RSS under auto and fp32."""
    cache, cache_fp32 = results["cache"], results["cache_fp32"]
    return f"""## Embedding cache

{cache["bytes_per_patch"] / 2**20:.2f} MiB per patch on disk (fp16; target ≤ 2 MiB). Building the
cache of {cache["patches"]} patches (encode batch size {cache["batch_size"]}) under `auto`, which picked {_picked(cache)}:
{cache["seconds_per_patch"]:.2f} s per patch, one-time check included; RSS {cache["rss_before_mib"]:.0f} MiB before (model loaded),
peak {cache["peak_rss_mib"]:.0f} MiB. The same build in fp32: {cache_fp32["seconds_per_patch"]:.2f} s per patch, peak RSS {cache_fp32["peak_rss_mib"]:.0f} MiB.
"""


def render_prepare(results: dict) -> str:
    """Markdown: prepare throughput."""
    prep = results["prepare"]
    return f"""## Prepare

Synthetic {"×".join(map(str, prep["shape"]))} volume pair from TIFF: {prep["seconds"]:.1f} s,
{prep["patches"]} patches, peak RSS {prep["peak_rss_mib"]:.0f} MiB (target < 60 s, < 3 GiB).
"""


def render_predict(results: dict) -> str:
    """Markdown: one full slice, prompt-free."""
    pred = results["predict"]
    return f"""## Prompt-free prediction of one {"×".join(map(str, pred["slice"]))} slice

Whole-tile box prompts on {pred["tiles"]} tiles of {pred["tile"]} px, each encoded with a {pred["halo"]}-px context margin (target ≤ 12 passes): {pred["seconds"]:.1f} s,
{pred["encoder_passes"]} encoder passes (encoder precision auto → {pred["precision"]}), peak RSS {pred["peak_rss_mib"]:.0f} MiB (target ≤ 4 GiB).
"""


def render_stream(results: dict) -> str:
    """Markdown: RSS while streaming stacks of two depths."""
    rows = "\n".join(
        f"| {'×'.join(map(str, r['shape']))} | {r['seconds']:.0f} | {r['rss_before_mib']:.0f} | {r['peak_rss_mib']:.0f} |"
        for r in results["stream"]
    )
    return f"""## Streaming a stack through `predict_stack`

The tiny model (its encoder is cheap, so the whole stack runs in minutes): if slices stream, peak
RSS does not grow with the number of slices.

| stack | seconds | RSS before (model loaded), MiB | peak RSS, MiB |
|---|---|---|---|
{rows}
"""
