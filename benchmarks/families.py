#!/usr/bin/env python
"""Bench: the SAM families side by side (SAM ViT-B, SAM-HQ ViT-B, SAM 2.1 Hiera; on request EdgeTAM
RepViT and SAM 3's tracker), through sam-mito.

Per family: encoder seconds per image, embedding-cache MiB per patch, one cached decoder training
step (batch 2, through the Trainer) and prompt-free prediction of a 768x1024 slice with ``sam-mito
predict``'s defaults (12 tiles of 256 px with a context margin, encoder precision ``auto``; one
run). Full mode uses each family's default transformers configuration (ViT-B for ``SamConfig`` and
``SamHQConfig``, the four-stage Hiera of ``Sam2Config``) with random weights: speed does not depend
on the weights. Quick mode runs the same code on the tiny test configurations. The encoder-seconds
column runs in fp32 for every family, so the families are compared on the same footing.

``make bench`` measures the SAM row's parts in its pipeline groups already (the same ViT-B with the
same random weights and training patches): it passes them in as ``known`` and they are not
measured twice.

EdgeTAM (it needs timm and torchvision: run it in ``make test-vision``'s ``.venv-vision``) and SAM 3
are measured when named with ``--families``; their full-size configurations are EdgeTAM's RepViT-M1
(transformers' default ``EdgeTamConfig`` builds a ResNet-50 backbone, so it is spelled out) and
``Sam3TrackerConfig``'s default (the released SAM 3 ViT, 1008 px).

``python benchmarks/families.py [--quick] [--encoder-only] [--families NAME ...]`` prints the
Markdown section; e.g. ``.venv-vision/bin/python benchmarks/families.py --encoder-only --families
sam sam2 edgetam sam3``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import tempfile
from datetime import date
from pathlib import Path

from common import machine, predict_slice, step_timer, timed

FAMILY_ORDER = ("sam", "sam_hq", "sam2")
#: Measured only when named (``--families``): EdgeTAM needs timm and torchvision.
NEWER_FAMILIES = ("edgetam", "sam3")
PARTS = ("encoder", "cache", "training", "slice")
#: Patches cached per family: the cached training step's batch of 2.
CACHED_PATCHES = 2


def _config(family: str, quick: bool):
    """The family's default configuration (full) or its tiny test configuration (quick)."""
    from transformers import (
        Sam2Config,
        Sam3TrackerConfig,
        SamConfig,
        SamHQConfig,
        SamHQVisionConfig,
        SamVisionConfig,
    )

    from sam_mito.models import families
    from sam_mito.models.loading import tiny_sam_config

    if quick:
        tiny = {
            "sam": tiny_sam_config,
            "sam_hq": families.tiny_sam_hq_config,
            "sam2": families.tiny_sam2_config,
        }
        tiny |= {"edgetam": families.tiny_edgetam_config, "sam3": families.tiny_sam3_config}
        return tiny[family]()
    # SAM's own vision initializer (1e-10) makes activations vanish; 0.02 gives realistic magnitudes.
    if family == "sam":
        return SamConfig(vision_config=SamVisionConfig(initializer_range=0.02))
    if family == "sam_hq":
        return SamHQConfig(vision_config=SamHQVisionConfig(initializer_range=0.02))
    if family == "edgetam":
        return _edgetam_config()
    if family == "sam3":
        return Sam3TrackerConfig()
    return Sam2Config()


def _edgetam_config():
    """EdgeTAM at full size: timm's RepViT-M1 (four stages, 48-384 channels) under ``EdgeTamConfig``'s
    defaults for the rest (1024 px input, FPN of 256 channels, SAM 2.1's decoder)."""
    from transformers import EdgeTamConfig, EdgeTamVisionConfig, TimmWrapperConfig

    backbone = TimmWrapperConfig(
        architecture="repvit_m1",
        model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]},
    )
    return EdgeTamConfig(vision_config=EdgeTamVisionConfig(backbone_config=backbone))


def _architecture(family: str, quick: bool) -> str:
    if quick:
        return "tiny test config"
    return {
        "sam": "ViT-B",
        "sam_hq": "ViT-B",
        "sam2": "Hiera, Sam2Config default",
        "edgetam": "RepViT-M1",
        "sam3": "SAM 3 ViT, Sam3TrackerConfig default",
    }[family]


def _model_dir(family: str, workdir: Path, quick: bool) -> Path:
    import torch

    from sam_mito.models.families import FAMILIES, processor_for

    folder = workdir / f"model-{family}-{'tiny' if quick else 'full'}"
    if not folder.exists():
        torch.manual_seed(0)
        config = _config(family, quick)
        FAMILIES[family].model_class(config).save_pretrained(folder)
        processor_for(config).save_pretrained(folder)
    return folder


def _data_dir(workdir: Path) -> Path:
    from sam_mito.data.patches import prepare_dataset

    folder = workdir / "data"
    if not folder.exists():
        prepare_dataset(folder, synthetic_shape=(5, 256, 512), seed=0)
    return folder


def _model(family: str, work: Path, quick: bool, measured: bool):
    """The family's model and processor; on the meta device (no processor) when nothing is measured."""
    import torch

    from sam_mito.models.families import FAMILIES
    from sam_mito.models.loading import load_sam

    if measured:
        return load_sam(str(_model_dir(family, work, quick)))
    with torch.device("meta"):  # parameter counts only
        return FAMILIES[family].model_class(_config(family, quick)), None


def measure_family(
    family: str, workdir: str, quick: bool, parts: tuple[str, ...] = PARTS, known: dict | None = None
) -> dict:
    """Measure ``parts`` of one family; returns a JSON-able dict (missing parts are absent).

    ``known`` maps parts already measured elsewhere (each a dict with a ``from`` key naming where)
    to their figures; those are copied, not measured again.
    """
    from sam_mito.data.synthetic import SyntheticEM
    from sam_mito.features.cache import build_cache
    from sam_mito.features.encoding import encode, pixel_values
    from sam_mito.models.families import FAMILIES
    from sam_mito.models.loading import freeze_for_decoder_training

    work = Path(workdir)
    known = {part: known[part] for part in parts if part in (known or {})}
    todo = [part for part in parts if part not in known]
    model, processor = _model(family, work, quick, measured=bool(todo))
    trainable, total = freeze_for_decoder_training(model)
    result = {
        "family": family,
        "title": FAMILIES[family].title,
        "architecture": _architecture(family, quick),
        "encoder_parameters": sum(p.numel() for p in model.vision_encoder.parameters()),
        "trainable_parameters": trainable,
        "total_parameters": total,
        **known,
    }
    warm = False
    if "cache" in todo or "training" in todo:  # first: building the cache also warms the encoder up
        from sam_mito.data.patches import load_patches

        patches = load_patches(_data_dir(work), "train").select(range(CACHED_PATCHES))
        # Named and keyed as the Trainer below names its cache, so training reuses it.
        options = {"cache_dir": work / f"cache-{family}", "precision": "fp32"}
        seconds, cache = timed(lambda: build_cache(model, processor, patches, name="train", **options))
        warm = True
        if "cache" in todo:
            result["cache"] = {
                "patches": len(cache),
                "mib_per_patch": cache.bytes_per_item / 2**20,
                "seconds_per_patch": seconds / len(cache),
            }
    if "encoder" in todo:
        image, _ = SyntheticEM((1, 256, 256), seed=0).render(0)
        pixels = pixel_values(processor, [image])
        repeats = 3 if quick else 1  # after a warm-up; one run at full size (seconds each)
        if not warm:
            encode(model, pixels, precision="fp32")
        times = [timed(lambda: encode(model, pixels, precision="fp32"))[0] for _ in range(repeats)]
        result["encoder"] = {
            "input": list(pixels.shape),
            "min_s": min(times),
            "median_s": statistics.median(times),
            "repeats": repeats,
        }
    if "training" in todo:
        result["training"] = _training_steps(model, patches, work, family, 5 if quick else 10)
    if "slice" in todo:
        one = predict_slice(model, processor)
        result["slice"] = {key: one[key] for key in ("slice", "seconds", "encoder_passes", "precision")}
    return result


def _training_steps(model, split, work: Path, family: str, steps: int) -> dict:
    """Seconds per cached Trainer step, batch 2 (the cache of ``split`` is already built)."""
    from sam_mito.training.config import SamMitoConfig
    from sam_mito.training.trainer import SamMitoTrainer

    args = SamMitoConfig(
        output_dir=str(work / f"out-{family}"), max_steps=steps, per_device_train_batch_size=2, use_cpu=True,
        report_to="none", save_strategy="no", eval_strategy="no", disable_tqdm=True,
        embedding_cache_dir=str(work / f"cache-{family}"), precision="fp32",
    )  # fmt: skip
    timer = step_timer()
    SamMitoTrainer(model=model, args=args, train_dataset=split, callbacks=[timer]).train()
    steady = timer.times[1:] or timer.times
    return {"min_s": min(steady), "median_s": statistics.median(steady), "steps": len(steady)}


def _add_speedups(rows: list[dict]) -> None:
    """Set each row's ``encoder_speedup_vs_sam`` from the SAM row's encoder seconds."""
    sam = next((row for row in rows if row["family"] == "sam" and "encoder" in row), None)
    for row in rows:
        if sam is not None and "encoder" in row:
            row["encoder_speedup_vs_sam"] = sam["encoder"]["median_s"] / row["encoder"]["median_s"]


def with_known(result: dict, known: dict) -> dict:
    """``result`` with every part that was copied from elsewhere (it has ``from``) replaced by ``known``'s.

    A copied part is only as fresh as the group that measured it: after that group is measured
    again, the families table shows its new figures, not the copy.
    """
    result = copy.deepcopy(result)
    for row in result["families"]:
        for part, figures in known.get(row["family"], {}).items():
            if "from" in row.get(part, {}):
                row[part] = figures
    _add_speedups(result["families"])
    return result


def measure(
    workdir: str,
    quick: bool,
    *,
    families: tuple[str, ...] = FAMILY_ORDER,
    parts: tuple[str, ...] = PARTS,
    known: dict | None = None,
) -> dict:
    """Measure every family in ``families`` (each of ``parts``) under ``workdir``.

    ``known`` maps a family to the parts already measured elsewhere (see :func:`measure_family`).
    """
    import torch
    import transformers

    rows = []
    for family in families:
        rows.append(measure_family(family, workdir, quick, parts, (known or {}).get(family)))
        gc.collect()  # the last family's model is freed before the next one loads
    _add_speedups(rows)
    return {
        "quick": quick,
        "machine": machine(),
        "threads": torch.get_num_threads(),
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "parts": list(parts),
        "families": rows,
    }


def _cell(row: dict, part: str, text) -> str:
    if part not in row:
        return "not measured"
    return text(row[part]) + (" †" if "from" in row[part] else "")


def _encoder_cell(encoder: dict) -> str:
    if encoder["repeats"] == 1:
        return f"{encoder['median_s']:.2f} (1 run)"
    return f"{encoder['median_s']:.2f} (min {encoder['min_s']:.2f}, {encoder['repeats']} runs)"


def render(result: dict) -> str:
    """The Markdown section: one row per family."""
    lines = [
        "| family | encoder params | decoder params trained | encoder s/image (fp32) | encoder speed vs SAM "
        "| cache MiB/patch | cached training step s (batch 2, median) | 768×1024 slice s (prompt-free, 1 run) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    reused = sorted({row[p]["from"] for row in result["families"] for p in PARTS if "from" in row.get(p, {})})
    for row in result["families"]:
        cells = [
            f"{row['title']} ({row['architecture']})",
            f"{row['encoder_parameters'] / 1e6:.1f}M",
            f"{row['trainable_parameters'] / 1e6:.2f}M",
            _cell(row, "encoder", _encoder_cell),
            f"{row['encoder_speedup_vs_sam']:.1f}×" if "encoder_speedup_vs_sam" in row else "—",
            _cell(row, "cache", lambda c: f"{c['mib_per_patch']:.2f}"),
            _cell(row, "training", lambda t: f"{t['median_s']:.3f} ({t['steps']} steps)"),
            _cell(
                row,
                "slice",
                lambda s: f"{s['seconds']:.1f} ({s['encoder_passes']} passes, {s.get('precision', 'fp32')})",
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    size = "quick mode, tiny test configurations" if result["quick"] else "full size, random weights"
    note = (
        f"\n† Measured once, by the {', '.join(f'`{name}`' for name in reused)} group(s) of `make bench` "
        "(the same model with the same random weights), not again here.\n"
        if reused
        else ""
    )
    titles = ", ".join(row["title"] for row in result["families"])
    newer = [row["title"] for row in result["families"] if row["family"] in NEWER_FAMILIES]
    levels = "SAM 2.1" + "".join(f", {title}" for title in newer)
    return f"""## SAM families: {titles}

Measured by `benchmarks/families.py` ({size}) on {result["machine"]}, {result["threads"]} torch
threads, {result["date"]}; torch {result["torch"]}, transformers {result["transformers"]}. Encoder in
fp32 on one 256×256 patch resized to the model's input (after a warm-up; median where several runs); the cache
holds what each decoder needs, in fp16 (SAM: the image embeddings; SAM-HQ: plus the first global ViT
block's output; {levels}: {"their" if newer else "its"} three feature levels). The slice is predicted as `sam-mito predict` does
by default: 256-px tiles with a 32-px context margin, encoder precision `auto` (its one-time check
included; the precision it picked is shown).

{chr(10).join(lines)}
{note}"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny configurations (seconds)")
    parser.add_argument(
        "--encoder-only", action="store_true", help="only encoder seconds per image, SAM ViT-B vs SAM 2.1"
    )
    parser.add_argument(
        "--families",
        nargs="+",
        choices=FAMILY_ORDER + NEWER_FAMILIES,
        help=f"the families to measure, in this order (default: {' '.join(FAMILY_ORDER)}; with "
        "--encoder-only: sam sam2)",
    )
    parser.add_argument("--json", help="also write the measured results here")
    args = parser.parse_args(argv)
    options = {"families": ("sam", "sam2"), "parts": ("encoder",)} if args.encoder_only else {}
    if args.families:
        options["families"] = tuple(args.families)
    with tempfile.TemporaryDirectory() as work:
        result = measure(work, args.quick, **options)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(render(result))


if __name__ == "__main__":
    main()
