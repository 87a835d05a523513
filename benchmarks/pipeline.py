"""The pipeline's own benchmark groups: training steps, encoder paths, cache, prepare, one slice's prediction.

Models are the ViT-B SAM architecture (or the tiny test config in quick mode) with random
weights: speed does not depend on them.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from common import model_dir, peak_rss_mib, predict_slice, rss_mib, step_timer, timed


def bench_prepare(shape: tuple[int, int, int], workdir: str) -> dict:
    """Seconds and peak RSS of `prepare_dataset` on a synthetic TIFF pair of `shape`."""
    import tifffile

    from sam_mito.data.patches import prepare_dataset
    from sam_mito.data.synthetic import SyntheticEM

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


def _count_flops(model, pixels) -> int:
    """FLOPs of one ``get_image_embeddings`` of ``pixels``, counted on a copy of ``model`` on the meta device.

    Nothing is computed, and attention is counted too (the CPU's fused attention kernel is not, so
    counting a real run on CPU leaves it out).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        shadow = type(model)(model.config)
    with FlopCounterMode(display=False) as counter:
        shadow.get_image_embeddings(torch.empty_like(pixels, device="meta"))
    return counter.get_total_flops()


def bench_encoder(size: str, workdir: str, repeats: int) -> dict:
    """Seconds per 1024² image (or the tiny input) for each encode path, error vs stock fp32, % of peak.

    Precision ``auto`` is resolved first and timed (its one-time check encodes the image in fp32
    and in bf16, which also warms both paths up); the path it picked is marked, not timed again
    (after the check ``auto`` is that same call).
    """
    import numpy as np
    import torch

    from sam_mito.data.synthetic import SyntheticEM
    from sam_mito.features.encoding import encode, pixel_values
    from sam_mito.features.precision import MAX_BF16_RELATIVE_ERROR, resolve_precision
    from sam_mito.models.loading import load_sam

    torch.set_grad_enabled(False)
    folder = model_dir(size, workdir)
    stock, processor = load_sam(str(folder))
    eager = type(stock).from_pretrained(folder, attn_implementation="eager")
    image, _ = SyntheticEM((1, 256, 256), seed=0).render(0)
    pixels = pixel_values(processor, [image])
    flops = _count_flops(stock, pixels)
    peak = _matmul_gflops()
    check_s, auto = timed(lambda: resolve_precision(stock, pixels, "auto"))
    paths = {
        "stock fp32 get_image_embeddings (transformers default: SDPA attention)": lambda: (
            stock.get_image_embeddings(pixels)
        ),
        "fp32, eager attention (the SAM notebooks' setting)": lambda: eager.get_image_embeddings(pixels),
        "sam-mito encode, fp32 (SDPA)": lambda: encode(stock, pixels, precision="fp32"),
        "sam-mito encode, bf16 autocast": lambda: encode(stock, pixels, precision="bf16"),
    }
    picked = {"fp32": "sam-mito encode, fp32 (SDPA)", "bf16": "sam-mito encode, bf16 autocast"}
    rows, reference = [], None
    for name, run in paths.items():
        times, output = [], None
        for _ in range(repeats):
            seconds, output = timed(run)
            times.append(seconds)
        reference = output if reference is None else reference  # the stock path's, measured first
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
            "path": picked[auto.precision],
            "bf16_relative_error": auto.bf16_relative_error,
            "limit": MAX_BF16_RELATIVE_ERROR,
            "check_s": check_s,
        },
    }


def bench_predict(size: str, workdir: str) -> dict:
    """Prompt-free prediction of one 768×1024 slice at the defaults: seconds, encoder passes, peak RSS."""
    from sam_mito.models.loading import load_sam

    return {"architecture": size, **predict_slice(*load_sam(str(model_dir(size, workdir))))}


def bench_training(size: str, workdir: str, cached_steps: int, seed_steps: int, patches: int = 4) -> dict:
    """Building the embedding cache, then seconds per Trainer step, batch 2: cached, then seed style.

    In a fresh process whose model folder already exists (so its peak RSS is the cache build's):
    the cache of ``patches`` patches is built under precision ``auto`` (the default; its one-time
    check included) and timed, with RSS before (model loaded) and peak RSS just after. The cached
    run then trains on it (its first step dropped), and the seed-style run (the encoder every step)
    on the same patches: the cache build ran the encoder, so every seed-style step is counted.

    Returns
    -------
    dict
        ``cached`` and ``seed_style`` step seconds (``min_s``, ``median_s``, ``steps``),
        ``speedup_median``, ``peak_rss_mib``, and ``cache``: the build's figures.
    """
    from sam_mito.data.patches import load_patches, prepare_dataset
    from sam_mito.models.loading import freeze_for_decoder_training, load_sam
    from sam_mito.training.config import SamMitoConfig
    from sam_mito.training.prompt_dataset import prompt_dataset
    from sam_mito.training.trainer import SamMitoTrainer

    folder = model_dir(size, workdir)
    data_dir = Path(workdir) / "data"
    prepare_dataset(data_dir, synthetic_shape=(5, 256, 512), seed=0)
    split = load_patches(data_dir, "train")
    split = split.select(range(min(patches, len(split))))

    result = {"architecture": size}
    for cached, n_steps in ((True, cached_steps), (False, seed_steps)):
        model, processor = load_sam(str(folder))
        freeze_for_decoder_training(model)
        args = SamMitoConfig(
            output_dir=f"{workdir}/out", max_steps=n_steps, per_device_train_batch_size=2, use_cpu=True,
            report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=True,
            embedding_cache=cached, embedding_cache_dir=f"{workdir}/cache",
        )  # fmt: skip
        before, start = rss_mib(), time.perf_counter()
        dataset = prompt_dataset(model, processor, split, args, name="train")
        seconds = time.perf_counter() - start
        if cached:
            cache = dataset.embeddings
            result["cache"] = {
                "architecture": size,
                "requested": args.precision,
                "precision": cache.metadata["precision"],
                "bf16_relative_error": cache.metadata["bf16_relative_error"],
                "patches": len(cache),
                "batch_size": args.encode_batch_size,
                "seconds_per_patch": seconds / len(cache),
                "rss_before_mib": before,
                "peak_rss_mib": peak_rss_mib(),
                "bytes_per_patch": cache.bytes_per_item,
            }
        timer = step_timer()
        SamMitoTrainer(model=model, args=args, train_dataset=dataset, callbacks=[timer]).train()
        steady = (timer.times[1:] or timer.times) if cached else timer.times
        key = "cached" if cached else "seed_style"
        result[key] = {"min_s": min(steady), "median_s": statistics.median(steady), "steps": len(steady)}
    result["speedup_median"] = result["seed_style"]["median_s"] / result["cached"]["median_s"]
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _picked(choice: dict) -> str:
    """What ``auto`` picked, with the bf16 error it measured (none without native bf16)."""
    error = choice["bf16_relative_error"]
    checked = f"bf16 relative error {error:.2e}" if error is not None else "no native bf16, not checked"
    return f"**{choice['precision']}** ({checked})"


def render_training(results: dict) -> str:
    """Markdown: seed-style vs cached Trainer steps, then the cache build."""
    train = results["training"]
    seed, cached = train["seed_style"], train["cached"]
    return f"""## Training step, batch 2, through the Trainer

| path | min s/step | median s/step | steps |
|---|---|---|---|
| seed style (encoder every step) | {seed["min_s"]:.3f} | {seed["median_s"]:.3f} | {seed["steps"]} |
| cached embeddings | {cached["min_s"]:.4f} | {cached["median_s"]:.4f} | {cached["steps"]} |

Speed-up: {train["speedup_median"]:.0f}× median over median, {seed["min_s"] / cached["min_s"]:.0f}× min over min
(target ≥ 80×). Both train on the same patches. The cached run goes first (its first step dropped);
its cache build warms the encoder up, so every seed-style step is counted.
Peak RSS {train["peak_rss_mib"]:.0f} MiB.

{render_cache(results) if "cache" in train else ""}"""


def render_encoder(results: dict) -> str:
    """Markdown: encode paths vs stock fp32, and what precision ``auto`` picked."""
    enc = results["encoder"]
    picked = enc["auto"].get("path")
    several = enc["repeats"] > 1
    rows = "\n".join(
        f"| {r['path']}{' (**`auto` picked this**)' if r['path'] == picked else ''} | "
        + (f"{r['min_s']:.2f} | {r['median_s']:.2f}" if several else f"{r['median_s']:.2f}")
        + f" | {r['speedup_vs_stock']:.2f}× | {r['relative_error']:.2e} | {r['percent_of_matmul_peak']:.0f}% |"
        for r in enc["paths"]
    )
    head = "| path | min s | median s |" if several else "| path | s |"
    rule = "|---|---|---|" if several else "|---|---|"
    return f"""## Encoder, one image of input {"×".join(map(str, enc["input"][-2:]))}

{enc["gflop_per_image"]:.3g} GFLOP per image (counted with `torch.utils.flop_counter` on the meta device,
attention included); this machine's best fp32 dense matmul: {enc["matmul_peak_gflops"]:.0f} GFLOP/s.
{enc["repeats"]} run{"s" if several else ""} per path, after the `auto` check below has run the fp32 and bf16 paths once (a warm-up);
error is the relative L2 difference from the stock fp32 embeddings.

{head} speed vs stock | relative error | % of matmul peak |
{rule}---|---|---|
{rows}

Encoder precision `auto` (the default) picked {_picked(enc["auto"])} on this machine: after its
one-time check it runs the marked row's call. The check (one fp32 and one bf16 encode; bf16 is kept if within
{enc["auto"]["limit"]:.0%} of fp32) took {enc["auto"]["check_s"]:.2f} s.
"""


def render_cache(results: dict) -> str:
    """Markdown: cache size per patch, build time and RSS under ``auto`` (built by the training group)."""
    cache = results["training"]["cache"]
    return f"""## Embedding cache

{cache["bytes_per_patch"] / 2**20:.2f} MiB per patch on disk (fp16; target ≤ 2 MiB). Building the
cache of {cache["patches"]} patches (encode batch size {cache["batch_size"]}; the cached training run's, in a fresh process) under
`auto`, which picked {_picked(cache)}: {cache["seconds_per_patch"]:.2f} s per patch, one-time check included;
RSS {cache["rss_before_mib"]:.0f} MiB before (model loaded), peak {cache["peak_rss_mib"]:.0f} MiB. In fp32 a patch costs one fp32 encode
(the encoder table's `sam-mito encode, fp32` row) and its write.
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

The {pred["architecture"]} model (random weights), `sam-mito predict`'s defaults: whole-tile box prompts on {pred["tiles"]} tiles of {pred["tile"]} px,
each encoded with a {pred["halo"]}-px context margin (target ≤ 12 passes): {pred["seconds"]:.1f} s, one run,
{pred["encoder_passes"]} encoder passes (encoder precision auto → {pred["precision"]}, its one-time check included),
peak RSS {pred["peak_rss_mib"]:.0f} MiB (target ≤ 4 GiB). The SAM row of the families table reuses this measurement.
"""
