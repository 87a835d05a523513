#!/usr/bin/env python
"""3D context for stacks: z-window × size filter → foreground IoU, instance F1, objects, seconds per slice.

The packaged tiny base's mask decoder is fine-tuned briefly on the 8 EPFL slices of
``../shared/epfl_sample`` (slices 7..98 of the EPFL training volume), then the 21 contiguous slices
of ``../shared/epfl_block`` (slices 144..164, never trained on) are segmented prompt-free. Their
probabilities are predicted once and cached; every post-processing setting is then applied to the
cached stack with the code ``sam-mito predict`` runs (:func:`sam_mito.inference.zcontext.smooth_slices`,
:func:`sam_mito.inference.postprocessing.clean_slice`, :func:`sam_mito.inference.postprocessing.drop_small_objects`)
and scored with :func:`sam_mito.evaluation.scoring.score_volumes`. Seconds per slice are the prediction's
(encoder and decoder, the same for every setting in one process) plus that setting's
post-processing. A second table scores single images (one slice at a time, 2D size filter).

Quick mode runs the same code on small synthetic volumes. Run alone: ``python benchmarks/zcontext.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import timed, train_tiny_base

SHARED = Path(__file__).resolve().parents[2] / "shared"
TRAIN = Path(os.environ.get("SAM_MITO_EPFL", SHARED / "epfl_sample"))
BLOCK = Path(os.environ.get("SAM_MITO_EPFL_BLOCK", SHARED / "epfl_block"))
#: ``(window, weighting)`` of the z-windows compared; window 1 is the per-slice output.
WINDOWS = [(1, "mean"), (3, "mean"), (5, "mean"), (5, "gaussian"), (7, "mean"), (7, "gaussian")]
WINDOWS += [(9, "mean"), (11, "mean")]
MIN_SIZES = [0, 1000, 5000, 10000, 15000, 20000, 40000]
#: ``(opening, fill holes)`` compared at the default window and size.
CLEANUPS = [(0, False), (0, True), (2, True), (4, True)]
MIN_SIZES_2D = [0, 250, 500, 1000, 2000]
#: Fine-tuning: long enough for the tiny base to find mitochondria at all (about 90 s of CPU unloaded).
STEPS, LEARNING_RATE = 800, 3e-4


def _data(quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """``(train images, train masks, test images, test masks (bool), source)``."""
    from sam_mito.data.synthetic import SyntheticEM
    from sam_mito.volumes.reading import load_pair

    if quick or not (TRAIN / "training.tif").exists() or not (BLOCK / "training.tif").exists():
        train_images, train_masks = SyntheticEM((4, 256, 256) if quick else (8, 512, 512), seed=0).volume()
        test_images, test_masks = SyntheticEM((6, 256, 256) if quick else (21, 512, 512), seed=1).volume()
        return train_images, train_masks, test_images, test_masks > 0, "synthetic"
    train_images, train_masks, _ = load_pair(TRAIN / "training.tif", TRAIN / "training_groundtruth.tif")
    test_images, test_masks, _ = load_pair(BLOCK / "training.tif", BLOCK / "training_groundtruth.tif")
    return train_images, train_masks, test_images, test_masks > 0, "EPFL"


def _train(work: Path, images, masks, test_images, test_masks, steps: int) -> Path:
    import tifffile

    from sam_mito.data.patches import PatchConfig, prepare_dataset

    for name, stack in {
        "train": images,
        "train_masks": masks,
        "test": test_images,
        "test_masks": test_masks,
    }.items():
        data = stack if "masks" not in name else (stack > 0).astype(np.uint8) * 255
        tifffile.imwrite(work / f"{name}.tif", data, photometric="minisblack")
    prepare_dataset(  # the held-out stack becomes the test split, never trained on
        work / "patches",
        images=work / "train.tif",
        masks=work / "train_masks.tif",
        test_images=work / "test.tif",
        test_masks=work / "test_masks.tif",
        config=PatchConfig(validation_fraction=0.125),
        overwrite=True,
    )
    train_tiny_base(
        work / "model",
        work / "patches",
        work / "cache",
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=LEARNING_RATE,
        box_jitter=10,
    )
    return work / "model"


def _score(work: Path, mask: np.ndarray, truth_path: Path) -> dict:
    import tifffile

    from sam_mito.evaluation.scoring import score_volumes
    from sam_mito.volumes.instances import block_grid, label_blocks
    from sam_mito.volumes.volume import Volume

    path = work / "prediction.tif"
    tifffile.imwrite(path, mask, photometric="minisblack")
    scores = score_volumes(path, truth_path)
    volume = Volume.from_array(mask)
    labeler, _ = label_blocks(block_grid(volume.shape), lambda block: volume.block(*block) > 0)
    return {
        "foreground_iou": scores["foreground_iou"],
        "instance_f1": scores["instance_f1"],
        "objects": labeler.count,
    }


def _finish(smoothed: np.ndarray, post) -> tuple[np.ndarray, float]:
    """The final mask of a smoothed stack under ``post`` (cleaned, size-filtered), and its seconds."""
    from sam_mito.inference.postprocessing import clean_slice, drop_small_objects
    from sam_mito.volumes.volume import Volume

    start = time.perf_counter()
    mask = np.stack([clean_slice(p, post) for p in smoothed])
    if post.min_size:
        _, blocks = drop_small_objects(Volume.from_array(mask), post.min_size)
        mask = np.concatenate([block for _, block, _ in blocks])
    return mask, time.perf_counter() - start


def measure(workdir: str, quick: bool) -> dict:
    """Fine-tune, predict the held-out stack once, then sweep the post-processing over its probabilities."""
    import tifffile

    from sam_mito.defaults import DEFAULT_MIN_SIZE, DEFAULT_Z_WEIGHTING, DEFAULT_Z_WINDOW
    from sam_mito.inference.postprocessing import PostProcessing
    from sam_mito.inference.segmenter import Segmenter
    from sam_mito.inference.zcontext import smooth_slices
    from sam_mito.models.loading import load_sam

    work = Path(workdir)
    train_images, train_masks, images, truth, source = _data(quick)
    steps = 5 if quick else STEPS
    train_seconds, model = timed(lambda: _train(work, train_images, train_masks, images, truth, steps))
    segmenter = Segmenter(*load_sam(str(model)), precision="fp32")
    start = time.perf_counter()
    probabilities = np.stack([segmenter.probabilities(image) for image in images])
    predict_seconds = (time.perf_counter() - start) / len(images)
    truth_path = work / "truth.tif"
    tifffile.imwrite(truth_path, truth.astype(np.uint8) * 255, photometric="minisblack")
    depth = len(images)

    rows, smoothed_by_window = [], {}
    for window, weighting in WINDOWS:
        start = time.perf_counter()
        smoothed = np.stack(
            [
                p
                for _, p in smooth_slices(
                    enumerate(probabilities), range(depth), depth=depth, window=window, weighting=weighting
                )
            ]
        )
        smooth_seconds = time.perf_counter() - start
        smoothed_by_window[(window, weighting)] = smoothed
        for min_size in MIN_SIZES:
            post = PostProcessing(z_window=window, z_weighting=weighting, min_size=min_size)
            mask, seconds = _finish(smoothed, post)
            rows.append(
                {
                    "z_window": window,
                    "z_weighting": weighting,
                    "min_size": min_size,
                    **_score(work, mask, truth_path),
                    "seconds_per_slice": predict_seconds + (smooth_seconds + seconds) / depth,
                }
            )
    default = {"z_window": DEFAULT_Z_WINDOW, "z_weighting": DEFAULT_Z_WEIGHTING, "min_size": DEFAULT_MIN_SIZE}
    cleanups = []
    for opening, fill_holes in CLEANUPS:
        post = PostProcessing(**default, opening=opening, fill_holes=fill_holes)
        mask, _ = _finish(smoothed_by_window[(DEFAULT_Z_WINDOW, DEFAULT_Z_WEIGHTING)], post)
        cleanups.append({"opening": opening, "fill_holes": fill_holes, **_score(work, mask, truth_path)})
    before, _ = _finish(probabilities, PostProcessing(z_window=1, fill_holes=False, min_size=0))
    return {
        "source": source,
        "train_slices": len(train_images),
        "steps": steps,
        "train_seconds": train_seconds,
        "test_shape": list(images.shape),
        "predict_seconds_per_slice": predict_seconds,
        "rows": rows,
        "default": default,
        "before": _score(work, before, truth_path),
        "cleanups": cleanups,
        "single_images": _single_images(work, probabilities, truth),
    }


def _single_images(work: Path, probabilities: np.ndarray, truth: np.ndarray) -> list[dict]:
    """Each slice as a single image (no z-window, 2D size filter in pixels): mean scores over slices."""
    import tifffile

    from sam_mito.inference.postprocessing import PostProcessing

    rows = []
    for min_size in MIN_SIZES_2D:
        post = PostProcessing(z_window=1, min_size=min_size)
        scores = []
        for z, probability in enumerate(probabilities):
            truth_path = work / "truth-slice.tif"
            tifffile.imwrite(truth_path, truth[z].astype(np.uint8) * 255)
            mask, _ = _finish(probability[None], post)
            scores.append(_score(work, mask, truth_path))
        rows.append({"min_size": min_size, **{k: float(np.mean([s[k] for s in scores])) for k in scores[0]}})
    return rows


def render(result: dict) -> str:
    """The sweep as a markdown section."""
    depth, height, width = result["test_shape"]
    default, before = result["default"], result["before"]
    chosen = next(row for row in result["rows"] if all(row[key] == value for key, value in default.items()))
    lines = [
        "## 3D context: z-window and size filter on a held-out stack",
        "",
        f"Tiny base fine-tuned {result['steps']} steps ({result['train_seconds']:.0f} s) on "
        f"{result['train_slices']} {result['source']} slices; a held-out stack of {depth} contiguous "
        f"{height}×{width} slices segmented prompt-free (256-px tiles, 32-px context margin, fp32, "
        f"{result['predict_seconds_per_slice']:.2f} s per slice), its probabilities cached once and every "
        "setting applied to them as `sam-mito predict` does: z-window, threshold 0.5, hole filling per "
        "slice, then 3D objects (face-connected) under `--min-size` voxels dropped. Scored as "
        "`sam-mito score` does: foreground IoU over every voxel, instance F1 at IoU ≥ 0.5 between 3D "
        "objects. Seconds per slice: prediction plus post-processing, one process (each of several "
        "processes also predicts `z_window // 2` halo slices beyond each end of its range).",
        "",
        "| output | foreground IoU | instance F1 | objects |",
        "|---|---|---|---|",
        f"| per slice (no z-window, no hole filling, no size filter) | {before['foreground_iou']:.4f} | "
        f"{before['instance_f1']:.4f} | {before['objects']} |",
        f"| defaults: z-window {default['z_window']} ({default['z_weighting']}), holes filled, min-size "
        f"{default['min_size']} | {chosen['foreground_iou']:.4f} | {chosen['instance_f1']:.4f} | "
        f"{chosen['objects']} |",
        "",
        "| z-window | weighting | min-size (voxels) | foreground IoU | instance F1 | objects | s / slice |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        mark = " **(default)**" if row is chosen else ""
        lines.append(
            f"| {row['z_window']} | {row['z_weighting'] if row['z_window'] > 1 else 'off'} | "
            f"{row['min_size']}{mark} | {row['foreground_iou']:.4f} | {row['instance_f1']:.4f} | "
            f"{row['objects']} | {row['seconds_per_slice']:.2f} |"
        )
    lines += [
        "",
        "Opening and hole filling at the default z-window and min-size:",
        "",
        "| opening radius (px) | fill holes | foreground IoU | instance F1 | objects |",
        "|---|---|---|---|---|",
    ]
    for row in result["cleanups"]:
        lines.append(
            f"| {row['opening']} | {'yes' if row['fill_holes'] else 'no'} | {row['foreground_iou']:.4f} | "
            f"{row['instance_f1']:.4f} | {row['objects']} |"
        )
    lines += [
        "",
        "Single images (each slice alone: no z-window, holes filled, 2D objects under `--min-size` pixels "
        "dropped), mean over the slices:",
        "",
        "| min-size (pixels) | foreground IoU | instance F1 | objects per slice |",
        "|---|---|---|---|",
    ]
    for row in result["single_images"]:
        lines.append(
            f"| {row['min_size']} | {row['foreground_iou']:.4f} | {row['instance_f1']:.4f} | "
            f"{row['objects']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        print(render(measure(tmp, quick)))
