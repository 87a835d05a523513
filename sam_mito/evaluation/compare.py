"""Score SAMs on a prepared split, base vs fine-tuned, in every prompt mode, with the same patches.

Both models see exactly the same patches and the same prompts (exact ground-truth boxes, no
jitter, or the same prompt-free box/grid). Embeddings come from the shared cache, so when the two
models share their frozen encoder (the decoder-only fine-tuning case) each patch is encoded once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from sam_mito.data.patches import load_patches
from sam_mito.data.prompts import GROUND_TRUTH_MODES, PROMPT_MODES, grid_points, row_boxes
from sam_mito.defaults import EVAL_MODES
from sam_mito.errors import SamMitoError
from sam_mito.evaluation.figures import comparison_figure
from sam_mito.evaluation.metrics import overlap_counts, per_image_scores, scores_from_counts
from sam_mito.features.cache import EmbeddingCache, build_cache
from sam_mito.files import atomic_file, check_outputs
from sam_mito.hub.cards import RESULTS_FILE
from sam_mito.models.decoding import decode_probabilities, pad_boxes
from sam_mito.models.devices import resolve_device
from sam_mito.models.loading import encoder_fingerprint, load_sam
from sam_mito.paths import public_name
from sam_mito.results import Result

logger = logging.getLogger(__name__)


def _batch_prompts(rows: list[dict], mode: str, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Prompts for a batch of rows: boxes ``(B, K, 4)`` (padded by repetition) or points ``(B, 1, N, 2)``."""
    if mode == "grid":
        return {"points": torch.tensor([[grid_points(*size)]] * len(rows), dtype=torch.float32)}
    boxes, _ = pad_boxes([row_boxes(row, mode) for row in rows])
    return {"boxes": boxes}


def predict_patches(
    model,
    embeddings: EmbeddingCache,
    split: datasets.Dataset,
    mode: str,
    *,
    rows: list[int] | None = None,
    batch_size: int = 16,
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Yield ``(rows, predicted masks, reference masks)`` batches of a split in one prompt mode.

    A patch's prediction is the union over its prompts (the instance boxes' masks, or one mask).

    Parameters
    ----------
    model : SamModel
        The SAM to prompt.
    embeddings : EmbeddingCache
        The split's cached image embeddings for this model's encoder.
    split : datasets.Dataset
        A split made by ``sam-mito prepare``.
    mode : str
        One of :data:`sam_mito.data.prompts.EVAL_MODES`.
    rows : list of int, keyword-only
        Rows to predict (default: all).
    batch_size : int, keyword-only
        Patches per decoder call.

    Yields
    ------
    rows, predictions, references : list of int, numpy.ndarray, numpy.ndarray
        The batch's rows and its boolean ``(B, H, W)`` masks.
    """
    rows = list(range(len(split))) if rows is None else rows
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = [split[i] for i in chunk]
        labels = np.stack([np.asarray(row["label"], dtype=bool) for row in batch])
        size = labels.shape[-2:]
        prompt = _batch_prompts(batch, mode, size)
        stacked = torch.stack([embeddings[i] for i in chunk])
        probabilities = decode_probabilities(model, stacked, size, **prompt).amax(dim=1)
        yield chunk, (probabilities > 0.5).numpy(), labels


def score_model(
    model, embeddings: EmbeddingCache, split: datasets.Dataset, mode: str
) -> tuple[dict[str, float], np.ndarray]:
    """Dice/IoU per image and pooled of one model in one mode, and each patch's Dice.

    Parameters
    ----------
    model, embeddings, split, mode
        As in :func:`predict_patches`.

    Returns
    -------
    scores : dict
        As :func:`sam_mito.evaluation.metrics.dice_iou`, and ``predicted_foreground``: the fraction
        of patches with at least one foreground pixel predicted (0: the model predicts nothing).
    dice : numpy.ndarray
        Each patch's Dice.
    """
    counts = [overlap_counts(pred, ref) for _, pred, ref in predict_patches(model, embeddings, split, mode)]
    intersection, pred_sum, ref_sum = (np.concatenate(c) for c in zip(*counts, strict=True))
    dice, _ = per_image_scores(intersection, pred_sum, ref_sum)
    scores = scores_from_counts(intersection, pred_sum, ref_sum)
    scores["predicted_foreground"] = float((pred_sum > 0).mean())
    return scores, dice


def results_table(results: list[dict]) -> str:
    """The Markdown table of a report's results: one row per prompt mode and model.

    Parameters
    ----------
    results : list of dict
        Rows of :func:`compare`'s report.

    Returns
    -------
    str
        The table.
    """
    lines = [
        "| prompts | model | Dice | IoU | pooled Dice | pooled IoU | patches |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {PROMPT_MODES[r['mode']]} | {r['model']} | {r['dice']:.4f} | {r['iou']:.4f} | "
        f"{r['pooled_dice']:.4f} | {r['pooled_iou']:.4f} | {r['n_images']} |"
        for r in results
    ]
    return "\n".join(lines)


def choose_figure_rows(split: datasets.Dataset, dice: np.ndarray, *, count: int = 4) -> list[int]:
    """Patches to show: the most crowded (most instances), one per patch position so neighbouring
    slices do not repeat a scene, then the lowest-Dice patch with foreground (a hard case).

    Ties break by row index, so the choice depends only on the data and the scores.

    Parameters
    ----------
    split : datasets.Dataset
        The scored split.
    dice : numpy.ndarray
        Each patch's Dice.
    count : int, keyword-only
        Rows to choose.

    Returns
    -------
    list of int
        Row indices.
    """
    instances = np.array([len(ids) for ids in split["instance_ids"]])
    positions = list(zip(split["y"], split["x"], strict=True))
    crowded = [int(i) for i in np.lexsort((np.arange(len(instances)), -instances))]
    distinct = {}
    for row in crowded:
        distinct.setdefault(positions[row], row)
    ranked = list(distinct.values()) + [row for row in crowded if row not in distinct.values()]
    chosen = ranked[: max(count - 1, 1)]
    hard = [int(i) for i in np.argsort(dice, kind="stable") if instances[i] > 0 and i not in chosen]
    return (chosen + hard[:1])[:count]


@dataclass
class Comparison(Result):
    """Base vs fine-tuned on one split: what ``comparison.json`` holds.

    Attributes
    ----------
    dataset, split, base, finetuned : str
        What was compared (Hub ids, or folder names for local paths).
    results : list of dict
        One row per model and prompt mode (see :func:`compare`).
    table : str
        The results as a Markdown table.
    warnings : list of str
        What the caller should be told (also logged): a model that predicts no foreground on any
        patch in some prompt mode.
    """

    dataset: str
    split: str
    base: str
    finetuned: str
    results: list[dict]
    table: str
    warnings: list[str] = field(default_factory=list)


def compare(
    base: str,
    finetuned: str,
    dataset: str | Path,
    *,
    split: str = "test",
    modes: tuple[str, ...] = EVAL_MODES,
    embedding_cache_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    figure_mode: str = "union",
    figure_rows: int = 4,
    precision: str = "auto",
    device: str | torch.device | None = None,
) -> Comparison:
    """Evaluate ``base`` and ``finetuned`` on exactly the same patches and prompts, in every mode.

    Parameters
    ----------
    base, finetuned : str
        Hub ids, local folders or ``sam-mito/tiny-base``.
    dataset : str or Path
        A folder or Hub id made by ``sam-mito prepare``.
    split : str, keyword-only
        The split to score.
    modes : tuple of str, keyword-only
        Some of :data:`sam_mito.data.prompts.EVAL_MODES`.
    embedding_cache_dir : str or Path, keyword-only
        Embedding cache folder (default ``$SAM_MITO_CACHE``).
    out_dir : str or Path, keyword-only
        Where to write ``comparison.json``, ``evaluation.md`` and ``comparison.png``.
    figure_mode : str, keyword-only
        The prompt mode the figure shows.
    figure_rows : int, keyword-only
        Patches in the figure.
    precision : str, keyword-only
        Image encoder precision (:data:`sam_mito.defaults.PRECISIONS`; ``auto`` decides per model).
    device : str or torch.device, keyword-only
        Where both models run, encoding included (checked before anything loads); default: the
        ``accelerate launch`` process's device, else CUDA when present, else the CPU.

    Returns
    -------
    Comparison
        ``dataset``, ``split``, ``base``, ``finetuned``, ``results`` and ``table``; each result has
        ``model`` (``base`` | ``finetuned``), ``mode``, ``prompts``, ``uses_ground_truth`` and the
        scores of :func:`sam_mito.evaluation.metrics.dice_iou`. ``dataset``, ``base`` and ``finetuned`` are Hub
        ids, or folder names for local paths (the report is shared with the model).
    """
    # the report goes beside the fine-tuned model's files (its folder is the usual out_dir)
    check_outputs({"out_dir": out_dir}, {"dataset": dataset, "base": base}, replaced=False)
    device = resolve_device(device)
    unknown = [mode for mode in modes if mode not in EVAL_MODES]
    if unknown:
        raise SamMitoError(f"prompt mode(s) {unknown}: expected some of {list(EVAL_MODES)}")
    patches = load_patches(dataset, split)
    models = {"base": load_sam(base, device=device), "finetuned": load_sam(finetuned, device=device)}
    if encoder_fingerprint(models["base"][0]) != encoder_fingerprint(models["finetuned"][0]):
        logger.warning(
            "%s and %s have different image encoders: their embeddings cannot be shared, encoding twice",
            base,
            finetuned,
        )
    results, dice = [], {}
    for label, (model, processor) in models.items():
        model.eval()
        cache = build_cache(
            model, processor, patches, name=split, cache_dir=embedding_cache_dir, precision=precision
        )
        for mode in tqdm(modes, desc=f"scoring {label}", unit="mode"):
            scores, dice[label, mode] = score_model(model, cache, patches, mode)
            results.append(
                {
                    "model": label,
                    "mode": mode,
                    "prompts": PROMPT_MODES[mode],
                    "uses_ground_truth": mode in GROUND_TRUTH_MODES,
                    "split": split,
                    **scores,
                }
            )
        models[label] = (model, cache)
    report = Comparison(
        dataset=public_name(str(dataset)),
        split=split,
        base=public_name(str(base)),
        finetuned=public_name(str(finetuned)),
        results=results,
        table=results_table(results),
        warnings=blind_warnings(results, split),
    )
    if out_dir is not None:
        figure_mode = figure_mode if figure_mode in modes else modes[0]
        figure = _figure(models, patches, dice, figure_mode, figure_rows)
        _write_report(Path(out_dir), report, figure)
    return report


def blind_warnings(results: list[dict], split: str) -> list[str]:
    """One warning, also logged, per model that predicted no foreground on any patch in a mode.

    Parameters
    ----------
    results : list of dict
        Rows of :func:`compare`'s report (with ``predicted_foreground``).
    split : str
        The split scored, named in the message.

    Returns
    -------
    list of str
    """
    messages = []
    for row in results:
        if row["predicted_foreground"] == 0 and row["n_images"]:
            message = (
                f"the {row['model']} model predicts no foreground on any of the {row['n_images']} "
                f"{split} patches with {row['prompts']} (Dice {row['dice']:.4f}): it learned nothing it "
                "can show (a learning rate too low for its base? docs/training.md)"
            )
            logger.warning(message)
            messages.append(message)
    return messages


def _figure(models: dict, patches: datasets.Dataset, dice: dict, mode: str, count: int):
    rows = choose_figure_rows(patches, dice["finetuned", mode], count=count)
    predictions, references = {}, None
    for label, (model, cache) in models.items():
        batches = list(predict_patches(model, cache, patches, mode, rows=rows))
        predictions[label] = [mask for _, masks, _ in batches for mask in masks]
        references = [ref for _, _, refs in batches for ref in refs]
    chosen = patches[rows]
    boxes = [[] for _ in rows] if mode == "grid" else [row_boxes(patches[row], mode) for row in rows]
    captions = [
        f"{s} z{z} y{y} x{x}"
        for s, z, y, x in zip(*(chosen[k] for k in ("source", "slice_index", "y", "x")), strict=True)
    ]
    return comparison_figure(
        [np.asarray(image) for image in chosen["image"]],
        references,
        {"base": predictions["base"], "fine-tuned": predictions["finetuned"]},
        boxes=boxes,
        scores={"base": dice["base", mode][rows], "fine-tuned": dice["finetuned", mode][rows]},
        captions=captions,
    )


def _write_report(out_dir: Path, report: Comparison, figure) -> None:
    """Write the JSON, the Markdown table and the figure, each through a temporary file and a rename."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {
        RESULTS_FILE: lambda path: path.write_text(json.dumps(report.to_dict(), indent=2)),
        "evaluation.md": lambda path: path.write_text(report["table"] + "\n"),
        "comparison.png": lambda path: figure.save(path, format="PNG"),
    }
    for name, write in outputs.items():
        with atomic_file(out_dir / name) as partial:
            write(partial)
    logger.info("evaluation written to %s", out_dir)
