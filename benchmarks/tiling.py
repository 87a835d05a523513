#!/usr/bin/env python
"""Tiling schemes for whole-slice prediction: encoder passes and foreground IoU on held-out real slices.

The packaged tiny base's mask decoder is fine-tuned briefly on the first EPFL slices of
``../shared/epfl_sample`` (or ``$SAM_MITO_EPFL``), and the remaining slices, never trained on,
are segmented prompt-free (one box per tile) with each scheme at the default 256-pixel tile:

- overlap-blend: tiles overlapping by 32 px, probabilities blended linearly (the old default);
- plain tiles: no overlap, no context;
- context margin ``h``: each pass sees the tile plus ``h`` px of context on every side (mirrored at
  the slice's edges); either only the tile is kept (cores only, as micro-sam tiles) or neighbouring
  windows are blended across their overlapping margins (the new default, 32 px).

Quick mode runs the same code on a small synthetic volume. Run alone: ``python benchmarks/tiling.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import train_tiny_base

DATA = Path(os.environ.get("SAM_MITO_EPFL", Path(__file__).resolve().parents[2] / "shared" / "epfl_sample"))
#: ``(name, overlap, halo, cores only)`` of each scheme, at the default tile.
SCHEMES = [
    ("overlap-blend 32 px (before)", 32, 0, True),
    ("plain tiles", 0, 0, True),
    ("context margin 32 px, cores only", 0, 32, True),
    ("context margin 64 px, cores only", 0, 64, True),
    ("context margin 32 px, margins blended (default)", 0, 32, False),
    ("context margin 64 px, margins blended", 0, 64, False),
]
TRAIN_SLICES = 5


def _volumes(quick: bool) -> tuple[np.ndarray, np.ndarray, str]:
    from sam_mito.data.synthetic import SyntheticEM
    from sam_mito.volumes.reading import load_pair

    if quick or not (DATA / "training.tif").exists():
        images, masks = SyntheticEM((4, 256, 512) if quick else (8, 768, 1024), seed=0).volume()
        return images, masks, "synthetic"
    images, masks, _ = load_pair(DATA / "training.tif", DATA / "training_groundtruth.tif")
    return images, masks, f"EPFL ({DATA.name})"


def measure(workdir: str, quick: bool) -> dict:
    """Fine-tune on the first slices, then score every scheme on the held-out ones."""
    import tifffile

    from sam_mito.data.patches import PatchConfig, prepare_dataset
    from sam_mito.evaluation.metrics import overlap_counts, scores_from_counts
    from sam_mito.inference.segmenter import Segmenter
    from sam_mito.models.loading import load_sam

    work = Path(workdir)
    images, masks, source = _volumes(quick)
    n_train = 2 if quick else TRAIN_SLICES
    tifffile.imwrite(work / "train.tif", images[:n_train], photometric="minisblack")
    tifffile.imwrite(work / "train_masks.tif", masks[:n_train] * 255, photometric="minisblack")
    tifffile.imwrite(work / "test.tif", images[n_train:], photometric="minisblack")
    tifffile.imwrite(work / "test_masks.tif", masks[n_train:] * 255, photometric="minisblack")
    prepare_dataset(  # the held-out slices become the test split, never trained on
        work / "patches",
        images=work / "train.tif",
        masks=work / "train_masks.tif",
        test_images=work / "test.tif",
        test_masks=work / "test_masks.tif",
        config=PatchConfig(validation_fraction=0.2),
        overwrite=True,
    )
    steps = 5 if quick else 300
    train_tiny_base(
        work / "model",
        work / "patches",
        work / "cache",
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-4,
        box_jitter=10,
    )
    model, processor = load_sam(str(work / "model"))
    held_out = range(n_train, len(images))
    rows = []
    for name, overlap, halo, cores_only in SCHEMES:
        segmenter = Segmenter(
            model,
            processor,
            mode="tile",
            tile=256,
            overlap=overlap,
            halo=halo,
            cores_only=cores_only,
            precision="fp32",
        )
        start = time.perf_counter()
        predicted = np.stack([segmenter.probabilities(images[z]) > 0.5 for z in held_out])
        seconds = time.perf_counter() - start
        scores = scores_from_counts(*overlap_counts(predicted, masks[list(held_out)]))
        rows.append(
            {
                "scheme": name,
                "overlap": overlap,
                "halo": halo,
                "cores_only": cores_only,
                "passes_per_slice": segmenter.encoder_passes / len(held_out),
                "seconds_per_slice": seconds / len(held_out),
                "foreground_iou": scores["pooled_iou"],
                "foreground_dice": scores["pooled_dice"],
            }
        )
    return {
        "source": source,
        "slice_shape": list(images.shape[1:]),
        "train_slices": n_train,
        "held_out_slices": len(held_out),
        "steps": steps,
        "rows": rows,
    }


def render(result: dict) -> str:
    """The comparison as a markdown section."""
    height, width = result["slice_shape"]
    lines = [
        "## Tiling: encoder passes and foreground IoU per slice",
        "",
        f"Tiny base fine-tuned {result['steps']} steps on {result['train_slices']} {result['source']} slices; "
        f"{result['held_out_slices']} held-out {height}×{width} slices segmented prompt-free (tile-box "
        "prompts, 256-px tiles, fp32); IoU and Dice pooled over their pixels.",
        "",
        "| scheme | encoder passes / slice | s / slice (tiny) | foreground IoU | foreground Dice |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['scheme']} | {row['passes_per_slice']:.0f} | {row['seconds_per_slice']:.2f} | "
            f"{row['foreground_iou']:.4f} | {row['foreground_dice']:.4f} |"
        )
    iou = {row["scheme"]: row["foreground_iou"] for row in result["rows"]}
    wide, default = (
        iou.get("context margin 64 px, margins blended"),
        iou.get("context margin 32 px, margins blended (default)"),
    )
    if wide is not None and default is not None:
        lines += [
            "",
            f"64-px margins against the default 32 px, both blended: {wide - default:+.4f} foreground IoU "
            "in this run (one tiny model, three slices). The default blends across the margins because "
            "keeping only the cores leaves straight cuts at tile borders.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        print(render(measure(tmp, quick)))
