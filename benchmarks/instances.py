#!/usr/bin/env python
"""Instances: connected components against the seeded watershed, on a held-out real stack.

The tiny base is fine-tuned on the 8 slices of ``../shared/epfl_sample`` as ``benchmarks/zcontext.py``
does, the 21 contiguous slices of ``../shared/epfl_block`` (never trained on) are segmented with
``sam-mito predict``'s defaults, and that one mask is labelled by each method
(:func:`sam_mito.volumes.labelling.label_array`: ``components``, and ``watershed`` at several seed
heights) and scored with :func:`sam_mito.evaluation.scoring.score_volumes` against the truth's 3D
components: instance F1 at IoU 0.5, mSA, objects per true object, and the labelling's seconds.
The truth mask itself is labelled the same way (objects per true object there: how often the method
splits a real mitochondrion, or merges touching ones). Quick mode runs the same code on synthetic
stacks. Run alone: ``python benchmarks/instances.py [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from common import machine, timed
from zcontext import STEPS, _data, _train

#: The tables' two header lines.
HEADER = (
    "| method | seed height | objects | per true object | instance F1 | mSA | SA50 | AP-75 | precision | recall "
    "| matched IoU | seconds |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
)
#: Voxels the truth is grown by for the merged-truth table: neighbours within twice this touch.
GROWTH = 3
#: ``(method, seed height)`` compared; the seed height only applies to the watershed.
METHODS = [("components", None)] + [("watershed", h) for h in (1.0, 2.0, 3.0, 4.0, 6.0)]
#: Score keys tabled, as ``score_volumes`` names them.
KEYS = (
    "instance_f1",
    "mean_segmentation_accuracy",
    "segmentation_accuracy_50",
    "average_precision_75",
    "instance_precision",
    "instance_recall",
    "matched_iou",
)


def _label(mask: np.ndarray, method: str, seed_height: float | None) -> tuple[np.ndarray, float]:
    from sam_mito.volumes.labelling import label_array
    from sam_mito.volumes.volume import Volume

    start = time.perf_counter()
    settings = {"seed_height": seed_height} if seed_height else {}
    labels, _ = label_array(Volume.from_array(mask), method=method, **settings)
    return labels, time.perf_counter() - start


def _rows(work: Path, mask: np.ndarray, truth_path: Path, true_objects: int) -> list[dict]:
    import tifffile

    from sam_mito.evaluation.scoring import score_volumes

    prediction = work / "prediction.tif"
    tifffile.imwrite(prediction, mask, photometric="minisblack")
    rows = []
    for method, seed_height in METHODS:
        labels, seconds = _label(mask, method, seed_height)
        tifffile.imwrite(work / "labels.tif", labels, photometric="minisblack")
        scores = score_volumes(prediction, truth_path, labels=work / "labels.tif").to_dict()
        rows.append(
            {
                "method": method,
                "seed_height": seed_height,
                "objects": int(labels.max()),
                "objects_per_true_object": int(labels.max()) / max(true_objects, 1),
                "seconds": seconds,
                **{key: scores.get(key) for key in KEYS},
            }
        )
    return rows


def measure(workdir: str, quick: bool) -> dict:
    """Fine-tune, segment the held-out stack once with the defaults, then label it by every method."""
    import tifffile
    from scipy import ndimage

    from sam_mito.inference.pipeline import segment_volume
    from sam_mito.inference.postprocessing import PostProcessing
    from sam_mito.inference.segmenter import Segmenter
    from sam_mito.models.loading import load_sam

    work = Path(workdir)
    train_images, train_masks, images, truth, source = _data(quick)
    steps = 5 if quick else STEPS
    train_seconds, model = timed(lambda: _train(work, train_images, train_masks, images, truth, steps))
    segmenter = Segmenter(*load_sam(str(model)), precision="fp32")
    mask = segment_volume(segmenter, images, post=PostProcessing(), labels=False).mask
    truth_mask = truth.astype(np.uint8) * 255
    truth_path = work / "truth.tif"
    tifffile.imwrite(truth_path, truth_mask, photometric="minisblack")
    true_objects = int(_label(truth_mask, "components", None)[0].max())
    grown = ndimage.binary_dilation(
        truth, structure=ndimage.generate_binary_structure(3, 1), iterations=GROWTH
    )
    return {
        "machine": machine(),
        "date": date.today().isoformat(),
        "source": source,
        "steps": steps,
        "train_seconds": train_seconds,
        "shape": list(images.shape),
        "true_objects": true_objects,
        "growth": GROWTH,
        "predicted": _rows(work, mask, truth_path, true_objects),
        "truth": _rows(work, truth_mask, truth_path, true_objects),
        "grown": _rows(work, grown.astype(np.uint8) * 255, truth_path, true_objects),
    }


def _cell(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render(result: dict) -> str:
    """The comparison as a markdown section."""
    depth, height, width = result["shape"]
    name = "epfl_block" if result["source"] == "EPFL" else "a synthetic stack"
    lines = [
        "## Instances: connected components against the seeded watershed",
        "",
        f"Measured on {result['machine']}, {result['date']}. The tiny base fine-tuned {result['steps']} steps "
        f"({result['train_seconds']:.0f} s) as in the 3D context section segments the {depth} held-out "
        f"{height}×{width} slices of {name} with `sam-mito predict`'s defaults; that mask is labelled by each "
        f"method and scored by `sam-mito score` against the truth's {result['true_objects']} 3D objects "
        "(F1, precision, recall at IoU 0.5; mSA and AP-75 as the score section defines them). The second table labels the truth mask "
        "itself: objects per true object above 1 there are real mitochondria split apart. The third labels "
        f"the truth grown by {result.get('growth', GROWTH)} voxels, so that neighbours closer than "
        f"{2 * result.get('growth', GROWTH)} voxels touch, as in a prediction that merges them.",
        "",
        *HEADER,
    ]

    def row(r: dict) -> str:
        height = "" if r["seed_height"] is None else f"{r['seed_height']:g}"
        return (
            f"| {r['method']} | {height} | {r['objects']} | {r['objects_per_true_object']:.2f} | "
            + " | ".join(_cell(r[key]) for key in KEYS)
            + f" | {r['seconds']:.1f} |"
        )

    lines += [row(r) for r in result["predicted"]]
    lines += [
        "",
        "The truth mask labelled by each method:",
        "",
        *HEADER,
    ]
    lines += [row(r) for r in result["truth"]]
    lines += [
        "",
        f"The truth grown by {result.get('growth', GROWTH)} voxels, labelled by each method:",
        "",
        *HEADER,
    ]
    lines += [row(r) for r in result.get("grown", [])]
    lines += ["", _conclusion(result)]
    return "\n".join(lines) + "\n"


def _conclusion(result: dict) -> str:
    """Which method the predicted mask favours (instance F1, then mSA; a tie goes to components)."""
    from sam_mito.defaults import DEFAULT_INSTANCES

    rows = result["predicted"]
    best = max(
        rows, key=lambda r: (r["instance_f1"], r["mean_segmentation_accuracy"], r["method"] == "components")
    )
    components = rows[0]
    split = [r for r in rows[1:] if r["objects"] > components["objects"]]
    text = (
        f"Best on the prediction: {best['method']}"
        + (f" (seed height {best['seed_height']:g})" if best["seed_height"] else "")
        + f", instance F1 {best['instance_f1']:.3f} against {components['instance_f1']:.3f} for components. "
    )
    if split:
        text += (
            f"Seed heights of {max(r['seed_height'] for r in split):g} or less split "
            f"{components['objects']} objects into up to {max(r['objects'] for r in split)}. "
        )
    verdict = "is the better one here" if best["method"] == DEFAULT_INSTANCES else "**is not the best here**"
    return text + f"The default (`--instances {DEFAULT_INSTANCES}`) {verdict}."


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        print(render(measure(tmp, quick)))
