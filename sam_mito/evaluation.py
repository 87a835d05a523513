"""Score models on a prepared split with the same patches and prompts: base vs fine-tuned."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from .data import load_patches
from .modeling import load_sam
from .training import SamMitoConfig, SamMitoTrainer, compute_segmentation_metrics, prompt_dataset

logger = logging.getLogger(__name__)


def evaluate_model(
    model_name_or_path: str,
    dataset: str | Path,
    *,
    split: str = "test",
    prompt_mode: str = "union",
    cache_dir: str | None = None,
) -> dict[str, float]:
    """Dice/IoU (per image and pooled) of one model on ``split`` with GT-derived box prompts, no jitter."""
    model, processor = load_sam(model_name_or_path)
    patches = load_patches(dataset, split)
    with tempfile.TemporaryDirectory() as scratch:
        config = SamMitoConfig(
            output_dir=scratch,
            prompt_mode=prompt_mode,
            cache_dir=cache_dir,
            use_cpu=True,
            report_to="none",
            per_device_eval_batch_size=16,
            disable_tqdm=True,
        )
        data = prompt_dataset(model, processor, patches, config, name=split)
        trainer = SamMitoTrainer(model=model, args=config, compute_metrics=compute_segmentation_metrics)
        metrics = trainer.evaluate(eval_dataset=data, metric_key_prefix="test")
    return {
        key.removeprefix("test_"): value for key, value in metrics.items() if "dice" in key or "iou" in key
    }


def compare(
    base: str,
    finetuned: str,
    dataset: str | Path,
    *,
    split: str = "test",
    prompt_mode: str = "union",
    cache_dir: str | None = None,
    out: str | Path | None = None,
) -> dict:
    """Evaluate ``base`` and ``finetuned`` on exactly the same patches and prompts; optionally write JSON.

    Returns ``{"split", "prompt_mode", "results": [{"model", "mode", "dice", "iou", ...}], "table"}``.
    """
    results = []
    for label, name in (("base", base), ("finetuned", finetuned)):
        scores = evaluate_model(name, dataset, split=split, prompt_mode=prompt_mode, cache_dir=cache_dir)
        results.append({"model": label, "mode": prompt_mode, "split": split, **scores})
    lines = ["| model | prompts | Dice | IoU | pooled Dice | pooled IoU |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r['model']} | {r['mode']} box (from ground truth) | {r['dice']:.4f} | {r['iou']:.4f} | "
        f"{r['pooled_dice']:.4f} | {r['pooled_iou']:.4f} |"
        for r in results
    ]
    report = {"split": split, "prompt_mode": prompt_mode, "results": results, "table": "\n".join(lines)}
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=2))
    return report
