"""`sam-mito score`: foreground and instance scores on hand-computed volumes, streamed in blocks."""

import json

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage

from sam_mito import score_volumes
from sam_mito.cli.main import main
from sam_mito.hub.cards import ModelCardInfo
from sam_mito.volumes import instances
from sam_mito.volumes.omezarr import create_image


def _volumes():
    """Truth and prediction (2, 8, 10) with one matched, one split, two merged, one missed, one false positive.

    Truth: T1 cube z0-1 y0-1 x0-1 (8 voxels); T2 bar z0 y4 x0-7 (8); T3 z0 y6 x0-2 (3);
    T4 z0 y6 x4-6 (3); T5 z1 y7 x8-9 (2).
    Prediction: P1 = T1 plus (0, 0, 2) (9 voxels, IoU 8/9); T2 split into x0-2 and x5-7 (3 + 3,
    IoU 3/8 each); T3 and T4 merged into z0 y6 x0-6 (7, IoU 3/7 each); T5 missed; a false
    positive z1 y0 x6-8 (3).
    """
    truth = np.zeros((2, 8, 10), np.uint8)
    truth[0:2, 0:2, 0:2] = 1
    truth[0, 4, 0:8] = 1
    truth[0, 6, 0:3] = 1
    truth[0, 6, 4:7] = 1
    truth[1, 7, 8:10] = 1
    pred = np.zeros_like(truth)
    pred[0:2, 0:2, 0:2] = 1
    pred[0, 0, 2] = 1
    pred[0, 4, 0:3] = 1
    pred[0, 4, 5:8] = 1
    pred[0, 6, 0:7] = 1
    pred[1, 0, 6:9] = 1
    return truth, pred


def _write_zarr(path, array):
    create_image(path, array.shape, array.dtype)[:] = array
    return path


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of one slice by 4x4 pixels, so instances must be merged across every kind of face."""
    monkeypatch.setattr(instances, "BLOCK_VOXELS", 16)
    monkeypatch.setattr(instances, "BLOCK_SIDE", 4)


def _check_hand_computed(scores):
    assert list(scores.to_dict()) == [
        "foreground_iou",
        "foreground_dice",
        "instance_precision",
        "instance_recall",
        "instance_f1",
        "matched_iou",
        "background_iou",
        "overall_iou",
        "mean_segmentation_accuracy",
        "segmentation_accuracy_50",
        "average_precision",
        "average_precision_50",
        "average_precision_75",
        "object_scores",
        "per_threshold",
        "per_slice",
    ]
    # truth 24 voxels, prediction 25, overlap 20
    assert scores["foreground_iou"] == pytest.approx(20 / 29)
    assert scores["foreground_dice"] == pytest.approx(40 / 49)
    # 5 truth instances, 5 predicted, only T1/P1 match
    assert scores["instance_precision"] == pytest.approx(1 / 5)
    assert scores["instance_recall"] == pytest.approx(1 / 5)
    assert scores["instance_f1"] == pytest.approx(2 / 10)
    assert scores["matched_iou"] == pytest.approx(8 / 9)
    # 160 voxels: the backgrounds overlap in 160 - 29 and their union is 160 - 20
    assert scores["background_iou"] == pytest.approx(131 / 140)
    assert scores["overall_iou"] == pytest.approx((20 / 29 + 131 / 140) / 2)
    # IoU 8/9 matches at 0.5..0.85 (8 thresholds): TP 1, FP 4, FN 4 -> SA 1/9; then 0
    assert scores["segmentation_accuracy_50"] == pytest.approx(1 / 9)
    assert scores["mean_segmentation_accuracy"] == pytest.approx(8 / 9 / 10)
    # equal scores: precision 1/5 at recall 1/5, recall levels 0..0.2 (21 of 101)
    assert scores["average_precision_50"] == pytest.approx(21 * 0.2 / 101)
    assert scores["average_precision"] == pytest.approx(8 * 21 * 0.2 / 101 / 10)
    first, second = scores["per_slice"]
    assert (first["truth_voxels"], first["predicted_voxels"]) == (18, 18)
    assert first["iou"] == pytest.approx(16 / 20) and first["dice"] == pytest.approx(32 / 36)
    assert (second["truth_voxels"], second["predicted_voxels"]) == (6, 7)
    assert second["iou"] == pytest.approx(4 / 9) and second["dice"] == pytest.approx(8 / 13)


@pytest.mark.parametrize("storage", ["tiff", "zarr"])
def test_hand_computed_scores_in_small_blocks(tmp_path, small_blocks, storage):
    truth, pred = _volumes()
    if storage == "tiff":
        tifffile.imwrite(tmp_path / "truth.tif", truth * 255)
        tifffile.imwrite(tmp_path / "pred.tif", pred * 255)
        paths = tmp_path / "pred.tif", tmp_path / "truth.tif"
    else:
        paths = _write_zarr(tmp_path / "pred.zarr", pred), _write_zarr(tmp_path / "truth.zarr", truth)
    _check_hand_computed(score_volumes(*paths, json_path=tmp_path / "scores.json"))
    assert json.loads((tmp_path / "scores.json").read_text())["foreground_iou"] == pytest.approx(20 / 29)


def test_given_labels_define_the_predicted_instances(tmp_path, small_blocks):
    truth, pred = _volumes()
    labels = np.zeros(pred.shape, np.uint16)
    labels[0:2, 0:2, 0:2] = 5
    labels[0, 0, 2] = 5
    labels[0, 4, 0:3] = 1000  # the two halves of T2 as one instance: IoU 6/8
    labels[0, 4, 5:8] = 1000
    labels[0, 6, 0:7] = 7
    labels[1, 0, 6:9] = 3
    paths = [
        _write_zarr(tmp_path / f"{name}.zarr", a) for name, a in [("p", pred), ("t", truth), ("l", labels)]
    ]
    scores = score_volumes(paths[0], paths[1], labels=paths[2])
    assert scores["instance_precision"] == pytest.approx(2 / 4)
    assert scores["instance_recall"] == pytest.approx(2 / 5)
    assert scores["instance_f1"] == pytest.approx(4 / 9)
    assert scores["matched_iou"] == pytest.approx((8 / 9 + 6 / 8) / 2)
    assert scores["foreground_iou"] == pytest.approx(20 / 29)


def test_perfect_and_empty_volumes(tmp_path):
    truth, _ = _volumes()
    paths = _write_zarr(tmp_path / "a.zarr", truth), _write_zarr(tmp_path / "b.zarr", truth)
    scores = score_volumes(*paths)
    assert scores["foreground_iou"] == 1.0 and scores["instance_f1"] == 1.0 and scores["matched_iou"] == 1.0
    empty = _write_zarr(tmp_path / "empty.zarr", np.zeros_like(truth))
    scores = score_volumes(empty, paths[1])
    assert (
        scores["foreground_iou"] == 0.0 and scores["instance_recall"] == 0.0 and scores["matched_iou"] is None
    )


def test_streamed_labels_equal_scipy_up_to_numbering(small_blocks):
    rng = np.random.default_rng(0)
    mask = rng.random((5, 13, 11)) > 0.72  # below percolation: many instances, many crossing blocks
    expected, count = ndimage.label(mask, structure=instances.STRUCTURE)
    grid = instances.block_grid(mask.shape, (1, 4, 4))
    assert grid.counts == (5, 4, 3)
    labeler, blocks = instances.label_blocks(grid, lambda b: mask[b])
    ours = np.zeros(mask.shape, np.uint32)
    for block, labels in blocks:
        ours[block] = labels
    assert labeler.count == count > 20
    assert np.array_equal(ours > 0, mask)
    pairs = np.unique(np.stack([ours[mask], expected[mask]]), axis=1)
    assert pairs.shape[1] == count  # a bijection between our ids and scipy's


def _card(folder):
    ModelCardInfo(
        base_model="sam-mito/tiny-base",
        dataset="patches",
        train_split="train",
        prompt_mode="union",
        box_jitter=0,
        loss_weights={"dice": 1.0},
        trainable_parameters=1,
        total_parameters=2,
        hyperparameters={"max_steps": 1},
        repo_or_path="model",
    ).write(folder)


def test_cli_prints_table_and_adds_prompt_free_volume_scores_to_the_card(tmp_path, capsys):
    truth, pred = _volumes()
    tifffile.imwrite(tmp_path / "truth.tif", truth * 255)
    _write_zarr(tmp_path / "pred.zarr", pred)
    (tmp_path / "model").mkdir()
    _card(tmp_path / "model")
    argv = ["score", "--prediction", str(tmp_path / "pred.zarr"), "--truth", str(tmp_path / "truth.tif")]
    assert main([*argv, "--out", str(tmp_path / "s.json"), "--update-card", str(tmp_path / "model")]) == 0
    out = capsys.readouterr().out
    assert "| foreground IoU (voxel-wise, whole volume) | 0.6897 |" in out
    card = (tmp_path / "model" / "README.md").read_text()
    assert "## Whole-volume scores (prompt-free)" in card
    assert "| truth.tif | 0.6897 | 0.8163 | 0.2000 | 0.2000 | 0.2000 | 0.8889 |" in card
    assert "name: foreground IoU (voxel-wise) (prompt-free, whole volume)" in card
    assert ModelCardInfo.load(tmp_path / "model").volume_results[0]["foreground_iou"] == pytest.approx(
        20 / 29
    )


def _bad_input_cases(tmp_path):
    truth, pred = _volumes()
    tifffile.imwrite(tmp_path / "truth.tif", truth * 255)
    _write_zarr(tmp_path / "pred.zarr", pred)
    _write_zarr(tmp_path / "short.zarr", pred[:1])
    _write_zarr(tmp_path / "probs.zarr", pred * np.uint8(200) + np.uint8(20))
    _write_zarr(tmp_path / "float_labels.zarr", pred.astype(np.float32))
    _write_zarr(tmp_path / "short_probabilities.zarr", pred[:1].astype(np.float32))
    _write_zarr(tmp_path / "int_probabilities.zarr", pred.astype(np.int16))
    _write_zarr(tmp_path / "big_probabilities.zarr", pred * np.float32(1.5))
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    zarr.open_array(str(tmp_path / "line.zarr"), mode="w", shape=(5,), dtype="uint8")
    boxes = create_image(tmp_path / "boxes.zarr", pred.shape, np.uint8, attrs={"sam_mito": {"mode": "boxes"}})
    boxes[:] = pred
    (tmp_path / "model").mkdir()
    _card(tmp_path / "model")
    return {
        "boxes prediction on a card": (
            ["--prediction", "boxes.zarr", "--truth", "truth.tif", "--update-card", "model"],
            "predicted with box prompts; --update-card records prompt-free scores only",
        ),
        "shape": (
            ["--prediction", "short.zarr", "--truth", "truth.tif"],
            "has shape (2, 8, 10); expected (1, 8, 10)",
        ),
        "binary": (["--prediction", "probs.zarr", "--truth", "truth.tif"], "expected a binary mask"),
        "float labels": (
            ["--prediction", "pred.zarr", "--truth", "truth.tif", "--labels", "float_labels.zarr"],
            "expected unsigned integer",
        ),
        "group": (["--prediction", "group.zarr", "--truth", "truth.tif"], "without OME-Zarr multiscales"),
        "1-D array": (["--prediction", "line.zarr", "--truth", "truth.tif"], "expected an OME-Zarr image"),
        "json over input": (
            ["--prediction", "pred.zarr", "--truth", "truth.tif", "--out", "truth.tif"],
            "--out is the same path as --truth",
        ),
        "probabilities shape": (
            [
                "--prediction",
                "pred.zarr",
                "--truth",
                "truth.tif",
                "--probabilities",
                "short_probabilities.zarr",
            ],
            "probabilities has shape (1, 8, 10); expected (2, 8, 10)",
        ),
        "probabilities type": (
            [
                "--prediction",
                "pred.zarr",
                "--truth",
                "truth.tif",
                "--probabilities",
                "int_probabilities.zarr",
            ],
            "probabilities of type int16; expected float probabilities in [0, 1]",
        ),
        "probabilities above 1": (
            [
                "--prediction",
                "pred.zarr",
                "--truth",
                "truth.tif",
                "--probabilities",
                "big_probabilities.zarr",
            ],
            "probabilities hold values outside [0, 1]",
        ),
        "matches over input": (
            ["--prediction", "pred.zarr", "--truth", "truth.tif", "--matches", "pred.zarr"],
            "--matches is the same path as --prediction",
        ),
        "matches and out the same": (
            ["--prediction", "pred.zarr", "--truth", "truth.tif", "--matches", "s.csv", "--out", "s.csv"],
            "--out and --matches name the same path",
        ),
        "model without card": (
            ["--prediction", "pred.zarr", "--truth", "truth.tif", "--update-card", "."],
            "no card_data.json",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "shape",
        "binary",
        "float labels",
        "group",
        "1-D array",
        "json over input",
        "probabilities shape",
        "probabilities type",
        "probabilities above 1",
        "matches over input",
        "matches and out the same",
        "model without card",
        "boxes prediction on a card",
    ],
)
def test_bad_input_is_one_error_line_status_2_and_nothing_written(tmp_path, monkeypatch, capsys, case):
    argv, message = _bad_input_cases(tmp_path)[case]
    monkeypatch.chdir(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    extra = [] if "--out" in argv else ["--out", "out.json"]  # a JSON output that must not appear
    assert main(["score", *argv, *extra]) == 2
    error = capsys.readouterr().err
    errors = [line for line in error.splitlines() if "error" in line]  # progress bars aside
    assert len(errors) == 1 and errors[0].startswith("sam-mito score: error: ") and message in errors[0]
    assert "Traceback" not in error
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
