"""The offline demo end to end (few steps): every artifact it promises, and the printed summary."""

import json

import numpy as np
import pandas as pd
import tifffile
from huggingface_hub import ModelCard

from sam_mito.cli.main import main
from sam_mito.defaults import EVAL_MODES
from sam_mito.files import mark


def test_demo_writes_dataset_model_card_scores_figure_and_prediction(tmp_path, capsys):
    out = tmp_path / "demo"
    stale = [
        "notes.txt",
        "model/checkpoint-500/optimizer.pt",
        "model/training_args.bin",
        "dataset/data/x.parquet",
    ]
    for name in stale:  # an earlier run's output: --overwrite replaces the whole folder
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("stale")
    mark(out)  # written by sam-mito
    assert main(["demo", "--out", str(out), "--steps", "3", "--overwrite"]) == 0
    assert [name for name in stale if (out / name).exists() and (out / name).read_bytes() == b"stale"] == []
    assert not (out / "model" / "checkpoint-500").exists() and not (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging or old folder left beside it
    printed = capsys.readouterr().out
    evaluation = json.loads((out / "model" / "comparison.json").read_text())
    assert {(r["model"], r["mode"]) for r in evaluation["results"]} == {
        (model, mode) for model in ("base", "finetuned") for mode in EVAL_MODES
    }
    assert evaluation["table"] in printed and "prompt-free full-slice prediction" in printed
    card = ModelCard.load(out / "model" / "README.md")
    assert "Demonstration model" in card.text and "not** Meta's SAM" in card.text
    assert "![Base vs fine-tuned on test patches](comparison.png)" in card.text
    assert {m.metric_name for m in card.data.eval_results if m.metric_type == "dice"} == {
        "Dice (union prompts, from ground truth)",
        "Dice (instance prompts, from ground truth)",
        "Dice (tile prompts)",
        "Dice (grid prompts)",
    }
    assert {m.metric_type for m in card.data.eval_results} == {"dice", "iou", "pooled_iou"}
    for artifact in ("dataset/README.md", "model/model.safetensors", "model/comparison.png"):
        assert (out / artifact).exists(), artifact
    mask, image = (
        tifffile.imread(out / "predict" / "mask.tif"),
        tifffile.imread(out / "predict" / "slice.tif"),
    )
    assert mask.shape == image.shape == (768, 1024) and set(np.unique(mask)) <= {0, 255}
    assert (out / "predict" / "prediction.png").exists()
    # the same unseen slice as OME-Zarr with instance labels, scored as a volume
    from sam_mito.volumes.reading import open_volume

    assert np.array_equal(open_volume(out / "predict" / "mask.zarr").raw()[0], mask)
    assert open_volume(out / "predict" / "labels.zarr").dtype == np.uint32
    scores = json.loads((out / "predict" / "scores.json").read_text())
    assert 0 <= scores["foreground_iou"] <= 1 and len(scores["per_slice"]) == 1
    assert f"foreground IoU {scores['foreground_iou']:.4f}" in printed
    # its instances measured, as `sam-mito measure` does: one slice, so in 2D
    table = pd.read_csv(out / "predict" / "measurements.csv")
    assert {"label", "pixels", "perimeter_px", "circularity", "centroid_y", "centroid_x"} <= set(
        table.columns
    )
    labels = open_volume(out / "predict" / "labels.zarr").raw()
    assert sorted(table["label"]) == sorted(set(np.unique(labels)) - {0})
    assert table["pixels"].sum() == (labels > 0).sum()
    summary = json.loads((out / "predict" / "measurements.summary.json").read_text())
    assert summary["objects"] == len(table) and summary["dimensions"] == 2
    assert summary["labels"] == "labels.zarr"  # not the staging folder it was measured in
    assert (out / "predict" / "measurements.png").exists()
    assert f"{summary['objects']} objects in labels.zarr" in printed
    assert f"{out}/predict/measurements.csv" in printed and "median circularity" in printed
