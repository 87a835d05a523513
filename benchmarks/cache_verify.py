#!/usr/bin/env python
"""What verifying the embedding cache's checksums costs, against one decoder epoch over that cache.

Opening a cache hashes every row block (XXH3-64) and compares it with the checksums recorded when
it was written. Two caches: the packaged tiny base's cache of synthetic patches (built through
``build_cache``, 32 KiB per patch) and a ViT-B-shaped cache (256×64×64 fp16, 2 MiB per patch, random
values: hashing speed does not depend on them) trained with ViT-B's mask decoder (random weights).
Verification is timed warm (pages in memory, as right after a build) and cold (the file's pages
dropped with ``posix_fadvise``, so they come from disk). The epoch is forward, backward and an Adam
step of the decoder on every row, batch 2, reading embeddings from the memory-mapped cache.

    python benchmarks/cache_verify.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

TARGET = 0.05  # verification under 5% of one decoder epoch


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _drop_pages(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _verify_seconds(array_path: Path, repeats: int) -> dict:
    import numpy as np

    from sam_mito.features.checksums import corrupted_rows

    record = json.loads(array_path.with_suffix(".json").read_text())["checksums"]

    def verify():
        assert corrupted_rows(np.load(array_path, mmap_mode="r"), record) == []

    cold = []
    for _ in range(repeats):
        _drop_pages(array_path)
        cold.append(_timed(verify))
    warm = [_timed(verify) for _ in range(repeats)]
    return {"warm_s": statistics.median(warm), "cold_s": statistics.median(cold)}


def _decoder_epoch_seconds(model, cache, split, batch_size: int = 2) -> float:
    """Seconds of one epoch of decoder training over every row of ``cache`` (the faster of two)."""
    import numpy as np
    import torch

    from sam_mito.models.decoding import decode
    from sam_mito.models.loading import freeze_for_decoder_training
    from sam_mito.training.losses import DiceCELoss

    freeze_for_decoder_training(model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    loss_fn = DiceCELoss()
    boxes = torch.tensor(split["union_box"], dtype=torch.float32)[:, None]
    labels = [torch.from_numpy(np.asarray(label, dtype=np.float32)) for label in split["label"]]

    def epoch():
        for first in range(0, len(cache), batch_size):
            rows = list(range(first, min(first + batch_size, len(cache))))
            embeddings = torch.stack([cache[i] for i in rows])
            target = torch.stack([labels[i] for i in rows])[:, None]
            size = tuple(target.shape[-2:])
            logits = decode(model, size, image_embeddings=embeddings, boxes=boxes[rows]).logits
            loss = loss_fn(logits[:, :, 0], target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return min(_timed(epoch) for _ in range(2))  # the first also pays one-time setup


def _tiny(workdir: Path, quick: bool, repeats: int) -> dict:
    from sam_mito.data.patches import load_patches, prepare_dataset
    from sam_mito.defaults import TINY_BASE
    from sam_mito.features.cache import build_cache
    from sam_mito.models.loading import load_sam

    data = workdir / "patches"
    prepare_dataset(data, synthetic_shape=(4, 256, 512) if quick else (24, 512, 512), seed=1)
    split = load_patches(data, "train")
    model, processor = load_sam(TINY_BASE)
    cache = build_cache(model, processor, split, name="train", cache_dir=workdir / "cache", precision="fp32")
    verify = _verify_seconds(cache.path, repeats)
    epoch = _decoder_epoch_seconds(model, cache, split)
    return {
        "name": "tiny base",
        "rows": len(cache),
        "bytes_per_row": cache.bytes_per_item,
        **verify,
        "epoch_s": epoch,
    }


def _vit_b(workdir: Path, quick: bool, repeats: int) -> dict:
    import numpy as np
    from transformers import SamConfig, SamModel

    from sam_mito.data.patches import load_patches
    from sam_mito.features.cache import EmbeddingCache
    from sam_mito.features.checksums import checksum_record

    split = load_patches(workdir / "patches", "train")
    rows = 8 if quick else 12
    split = split.select([i % len(split) for i in range(rows)])
    path = workdir / "vit-b.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, 256, 64, 64))
    array[:] = np.random.default_rng(0).standard_normal(array.shape, dtype=np.float32).astype(np.float16)
    array.flush()
    path.with_suffix(".json").write_text(json.dumps({"checksums": checksum_record(array)}))
    del array
    verify = _verify_seconds(path, repeats)
    model = SamModel(SamConfig())
    epoch = _decoder_epoch_seconds(model, EmbeddingCache(path), split)
    return {
        "name": "ViT-B shape",
        "rows": rows,
        "bytes_per_row": 256 * 64 * 64 * 2,
        **verify,
        "epoch_s": epoch,
    }


def measure(workdir: str, quick: bool) -> dict:
    """Verification seconds (warm and cold) and one decoder epoch's seconds, for two cache sizes.

    Parameters
    ----------
    workdir : str
        Scratch folder.
    quick : bool
        Tiny sizes (a few seconds).

    Returns
    -------
    dict
        ``caches``: one row per cache with ``rows``, ``bytes_per_row``, ``warm_s``, ``cold_s``,
        ``epoch_s`` and the ratios ``warm_fraction`` and ``cold_fraction``; ``target``.
    """
    workdir = Path(workdir)
    repeats = 2 if quick else 5
    caches = [_tiny(workdir, quick, repeats), _vit_b(workdir, quick, repeats)]
    for row in caches:
        row["warm_fraction"] = row["warm_s"] / row["epoch_s"]
        row["cold_fraction"] = row["cold_s"] / row["epoch_s"]
    return {"caches": caches, "target": TARGET, "quick": quick}


def render(result: dict) -> str:
    """Markdown section: verification cost as a share of one decoder epoch."""
    rows = "\n".join(
        f"| {r['name']} | {r['rows']} | {r['bytes_per_row'] / 2**10:.0f} KiB | {r['warm_s'] * 1e3:.2f} | "
        f"{r['cold_s'] * 1e3:.2f} | {r['epoch_s']:.2f} | {100 * r['warm_fraction']:.3f}% | "
        f"{100 * r['cold_fraction']:.3f}% |"
        for r in result["caches"]
    )
    worst = max(r["cold_fraction"] for r in result["caches"])
    verdict = "within" if worst < result["target"] else "**over**"
    return f"""## Embedding cache verification

Opening a cache checks an XXH3-64 checksum per block of rows (blocks of about 16 MiB). Cost against
one decoder epoch over the same cache (forward, backward and Adam step on every row, batch 2); warm:
pages in memory, as right after a build; cold: the file's pages dropped first, so they come from disk
(the epoch then finds them in memory).

| cache | rows | per row | verify warm (ms) | verify cold (ms) | epoch (s) | warm / epoch | cold / epoch |
|---|---|---|---|---|---|---|---|
{rows}

Worst case {100 * worst:.3f}% of an epoch, {verdict} the {100 * result["target"]:.0f}% target.
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        print(render(measure(scratch, options.quick)))
