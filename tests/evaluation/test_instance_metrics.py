"""The field's instance metrics: mSA, SA50, COCO-style AP and AP-75, overall IoU and the matches file.

Every number is computed by hand in the test that checks it. The volumes are one slice of rows:
each object is a run of voxels along x, on its own row, so IoUs are ratios of run lengths. With
``n`` the truth objects, a curve point of precision ``p`` reached at recall ``TP / n`` covers the
recall levels ``i / 100`` with ``100 TP >= i n``.
"""

import csv

import numpy as np
import pytest
import tifffile

from sam_mito import score_volumes
from sam_mito.cli.main import main
from sam_mito.evaluation import scoring
from sam_mito.evaluation.instance_metrics import IOU_THRESHOLDS, average_precision, match_instances
from sam_mito.volumes import instances
from sam_mito.volumes.omezarr import create_image

WIDTH = 12


@pytest.fixture
def small_blocks(monkeypatch):
    """Score in blocks of 4x4 pixels, so objects, their sizes and probability sums cross block faces."""
    monkeypatch.setattr(
        scoring, "block_grid", lambda shape, chunks=None: instances.BlockGrid(shape, (1, 4, 4))
    )


def _rows(runs: dict[int, tuple[int, int]]) -> np.ndarray:
    """A (1, 8, WIDTH) mask with, for each row ``y``, the voxels ``x0 <= x < x1`` of ``runs[y]``."""
    mask = np.zeros((1, 8, WIDTH), np.uint8)
    for y, (x0, x1) in runs.items():
        mask[0, y, x0:x1] = 1
    return mask


def _zarr(path, array):
    create_image(path, array.shape, array.dtype)[:] = array
    return path


def _score(tmp_path, truth, pred, **kwargs):
    return score_volumes(_zarr(tmp_path / "pred.zarr", pred), _zarr(tmp_path / "truth.zarr", truth), **kwargs)


def _sweep(scores):
    return [
        (row["true_positives"], row["false_positives"], row["false_negatives"])
        for row in scores["per_threshold"]
    ]


def test_the_thresholds_are_the_decimals_from_half_to_0_95():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_coco_101_point_ap_against_a_hand_computed_curve():
    # 4 truth objects; 5 predictions ranked by score: hit, miss, hit, hit, miss
    # ranks:     1     2     3     4     5
    # precision  1     1/2   2/3   3/4   3/5
    # recall     1/4   1/4   1/2   3/4   3/4
    # best precision at this recall or beyond: 1, 3/4, 3/4, 3/4, 3/5
    # recall levels 0..0.25 (26 levels) -> 1; 0.26..0.75 (50 levels) -> 3/4; 0.76..1 (25) -> 0
    hits = np.array([True, False, True, True, False])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert average_precision(hits, scores, n_truth=4) == pytest.approx((26 * 1 + 50 * 0.75) / 101)
    # the order of the arrays does not matter, only the scores
    assert average_precision(hits[::-1], scores[::-1], n_truth=4) == pytest.approx(63.5 / 101)
    # all-point (VOC) interpolation would give 1/4 * 1 + 1/2 * 3/4 = 0.625, not 0.6287
    assert average_precision(hits, scores, n_truth=4) != pytest.approx(0.625)


def test_equal_scores_are_one_step_of_the_curve_whatever_the_numbering():
    # one point: precision 3/5 at recall 3/4 -> levels 0..0.75 (76 levels) at 3/5
    for hits in ([True, False, True, True, False], [False, False, True, True, True]):
        assert average_precision(np.array(hits), np.zeros(5), n_truth=4) == pytest.approx(76 * 0.6 / 101)
    # ties broken within a score group only: 0.9 alone (a hit), then four tied at 0.5 (two hits)
    # points: (p 1, r 1/4), (p 3/5, r 3/4): levels 0..0.25 -> 1 (26), 0.26..0.75 -> 3/5 (50)
    hits = np.array([True, False, True, True, False])
    assert average_precision(hits, np.array([0.9, 0.5, 0.5, 0.5, 0.5]), n_truth=4) == pytest.approx(
        (26 + 50 * 0.6) / 101
    )


def test_ap_of_empty_sides():
    assert average_precision(np.zeros(0, bool), np.zeros(0), n_truth=0) == 1.0
    assert average_precision(np.zeros(2, bool), np.zeros(2), n_truth=0) == 0.0
    assert average_precision(np.zeros(0, bool), np.zeros(0), n_truth=3) == 0.0


def test_a_recall_of_exactly_a_level_reaches_it():
    # 10 truth objects, 3 found by 3 predictions: precision 1 at recall exactly 0.3 -> levels 0..0.3 (31)
    assert average_precision(np.ones(3, bool), np.ones(3), n_truth=10) == pytest.approx(31 / 101)


def test_split_one_truth_predicted_as_two(tmp_path, small_blocks):
    # truth x0-9 (10 voxels); predicted as x0-5 (6, IoU 6/10) and x7-9 (3, IoU 3/10)
    truth = _rows({1: (0, 10)})
    pred = _rows({1: (0, 6)})
    pred[0, 1, 7:10] = 1
    scores = _score(tmp_path, truth, pred)
    # IoU 0.6 matches at 0.5, 0.55 and exactly 0.6: TP 1, FP 1 (the other half), FN 0 -> SA 1/2
    assert _sweep(scores) == [(1, 1, 0)] * 3 + [(0, 2, 1)] * 7
    assert scores["segmentation_accuracy_50"] == pytest.approx(1 / 2)
    assert scores["mean_segmentation_accuracy"] == pytest.approx(3 * (1 / 2) / 10)
    # equal scores: one point, precision 1/2 at recall 1 -> every level at 1/2
    assert scores["average_precision_50"] == pytest.approx(1 / 2)
    assert scores["average_precision_75"] == 0.0
    assert scores["average_precision"] == pytest.approx(3 * (1 / 2) / 10)
    assert (scores["instance_precision"], scores["instance_recall"]) == (0.5, 1.0)


def test_merged_two_truths_predicted_as_one(tmp_path, small_blocks):
    # truths x0-5 (6) and x7-8 (2), predicted as one x0-8 (9): IoU 6/9 and 2/9
    truth = _rows({2: (0, 6)})
    truth[0, 2, 7:9] = 1
    pred = _rows({2: (0, 9)})
    scores = _score(tmp_path, truth, pred)
    # IoU 2/3 matches at 0.5..0.65 (4 thresholds): TP 1, FP 0, FN 1 -> SA 1/2; above: FP 1, FN 2
    assert _sweep(scores) == [(1, 0, 1)] * 4 + [(0, 1, 2)] * 6
    assert scores["mean_segmentation_accuracy"] == pytest.approx(4 * (1 / 2) / 10)
    # precision 1 at recall 1/2 -> levels 0..0.5 (51 levels)
    assert scores["average_precision_50"] == pytest.approx(51 / 101)
    assert scores["average_precision"] == pytest.approx(4 * (51 / 101) / 10)
    assert scores["average_precision_75"] == 0.0


def test_missed_truth(tmp_path, small_blocks):
    truth = _rows({0: (0, 3), 5: (4, 9)})
    pred = _rows({0: (0, 3)})  # the first found exactly, the second missed
    scores = _score(tmp_path, truth, pred)
    assert _sweep(scores) == [(1, 0, 1)] * 10
    assert scores["mean_segmentation_accuracy"] == pytest.approx(1 / 2)
    assert scores["segmentation_accuracy_50"] == pytest.approx(1 / 2)
    assert scores["average_precision"] == pytest.approx(51 / 101)
    assert scores["average_precision_75"] == pytest.approx(51 / 101)


def test_false_positive_ranked_by_probability_or_not(tmp_path, small_blocks):
    truth = _rows({0: (0, 3)})
    pred = _rows({0: (0, 3), 6: (2, 10)})  # the truth found exactly, and a false positive of 8 voxels
    scores = _score(tmp_path, truth, pred)
    assert _sweep(scores) == [(1, 1, 0)] * 10
    assert scores["mean_segmentation_accuracy"] == pytest.approx(1 / 2)
    # equal scores: precision 1/2 at recall 1
    assert scores["object_scores"] == "equal" and scores["average_precision"] == pytest.approx(1 / 2)

    probabilities = np.full(pred.shape, 0.1, np.float32)
    probabilities[0, 0, 0:3] = 0.9  # the true object: mean 0.9
    probabilities[0, 6, 2:10] = 0.3  # the false positive: mean 0.35, though one voxel is 1.0
    probabilities[0, 6, 9] = 1.0
    probabilities[0, 6, 2] = 0.0
    _zarr(tmp_path / "p.zarr", probabilities)
    ranked = _score(tmp_path, truth, pred, probabilities=tmp_path / "p.zarr")
    # the hit first: precision 1 at recall 1 -> AP 1
    assert ranked["object_scores"] == "mean_probability" and ranked["average_precision"] == 1.0
    probabilities[0, 0, 0:3] = 0.2  # now the false positive first: (0, 0), then (1/2, 1) -> 1/2
    _zarr(tmp_path / "p.zarr", probabilities)
    assert _score(tmp_path, truth, pred, probabilities=tmp_path / "p.zarr")["average_precision"] == 0.5
    # ranking changes AP only: mSA and the F1 are the same
    assert ranked["mean_segmentation_accuracy"] == scores["mean_segmentation_accuracy"]
    assert ranked["instance_f1"] == scores["instance_f1"]


def _sweep_volumes():
    """Truth T1 x0-9 (row 1), T2 x0-3 (row 3), T3 x0-1 (row 5); prediction P1 x0-6 (IoU exactly 7/10
    with T1), P2 = T2 (IoU 1), P3 a false positive x4-7 (row 7); T3 missed."""
    truth = _rows({1: (0, 10), 3: (0, 4), 5: (0, 2)})
    pred = _rows({1: (0, 7), 3: (0, 4), 7: (4, 8)})
    labels = np.zeros(pred.shape, np.uint32)
    labels[0, 1, 0:7], labels[0, 3, 0:4], labels[0, 7, 4:8] = 10, 20, 30
    return truth, pred, labels


def test_threshold_sweep_where_a_pair_matches_up_to_0_7(tmp_path, small_blocks):
    truth, pred, labels = _sweep_volumes()
    _zarr(tmp_path / "labels.zarr", labels)
    scores = _score(tmp_path, truth, pred, labels=tmp_path / "labels.zarr")
    # 0.5..0.7 (5 thresholds): P1-T1 and P2-T2 match: TP 2, FP 1, FN 1 -> SA 2/4
    # 0.75..0.95 (5): only P2-T2: TP 1, FP 2, FN 2 -> SA 1/5
    assert _sweep(scores) == [(2, 1, 1)] * 5 + [(1, 2, 2)] * 5
    assert scores["segmentation_accuracy_50"] == pytest.approx(2 / 4)
    assert scores["mean_segmentation_accuracy"] == pytest.approx((5 * 2 / 4 + 5 * 1 / 5) / 10)  # 0.35
    # equal scores, n = 3: at 0.5..0.7 one point (2/3, 2/3): levels with 200 >= 3i, i <= 66 (67 levels)
    # -> 67 * 2/3 / 101 = 134/303; at 0.75..0.95 (1/3, 1/3): i <= 33 (34 levels) -> 34/303
    assert scores["average_precision_50"] == pytest.approx(134 / 303)
    assert scores["average_precision_75"] == pytest.approx(34 / 303)
    assert scores["average_precision"] == pytest.approx((5 * 134 / 303 + 5 * 34 / 303) / 10)  # 28/101
    assert [row["iou_threshold"] for row in scores["per_threshold"]] == list(IOU_THRESHOLDS)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_threshold_sweep_ranked_by_mean_probability(tmp_path, small_blocks, dtype):
    truth, pred, labels = _sweep_volumes()
    probabilities = np.full(pred.shape, 0.05)
    probabilities[labels == 10], probabilities[labels == 30], probabilities[labels == 20] = 0.9, 0.8, 0.6
    if dtype == np.uint8:  # 0..255, as 8-bit probability maps are stored
        probabilities = np.round(probabilities * 255)
    _zarr(tmp_path / "p.zarr", probabilities.astype(dtype))
    _zarr(tmp_path / "labels.zarr", labels)
    scores = _score(tmp_path, truth, pred, labels=tmp_path / "labels.zarr", probabilities=tmp_path / "p.zarr")
    # ranked P1 (0.9), P3 (0.8, false), P2 (0.6)
    # at 0.5..0.7: hits 1, 0, 1: precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3; best beyond: 1, 2/3, 2/3
    #   levels i <= 33 (34) -> 1; 34 <= i <= 66 (33) -> 2/3; AP = (34 + 22) / 101 = 56/101
    # at 0.75..0.95: hits 0, 0, 1: precision 0, 0, 1/3 at recall 0, 0, 1/3; best beyond 1/3 everywhere
    #   levels i <= 33 (34) -> 1/3; AP = 34/303, as with equal scores
    assert scores["average_precision_50"] == pytest.approx(56 / 101)
    assert scores["average_precision_75"] == pytest.approx(34 / 303)
    assert scores["average_precision"] == pytest.approx((56 / 101 + 34 / 303) / 2)  # 1/3
    assert scores["mean_segmentation_accuracy"] == pytest.approx(0.35)  # ranking changes AP only


def test_overall_iou_is_the_mean_of_foreground_and_background_iou(tmp_path):
    # 96 voxels; truth x0-5 on row 0 (6), prediction x2-9 on row 0 (8): overlap 4, union 10
    truth, pred = _rows({0: (0, 6)}), _rows({0: (2, 10)})
    scores = _score(tmp_path, truth, pred)
    assert scores["foreground_iou"] == pytest.approx(4 / 10)
    # backgrounds: overlap 96 - 10 = 86 voxels, union 96 - 4 = 92
    assert scores["background_iou"] == pytest.approx(86 / 92)
    assert scores["overall_iou"] == pytest.approx((4 / 10 + 86 / 92) / 2)
    full = np.ones_like(truth)
    assert _score(tmp_path, full, full)["background_iou"] == 1.0  # no background on either side


def test_match_instances_at_a_threshold():
    # truth 1 (10 voxels), predictions 5 (7 voxels, inside it) and 6 (3 voxels, inside it)
    pairs = np.array([1 << 32 | 5, 1 << 32 | 6], np.uint64), np.array([7, 3])
    truth_sizes, pred_sizes = (
        (np.array([1], np.uint64), np.array([10])),
        (np.array([5, 6], np.uint64), np.array([7, 3])),
    )
    assert match_instances(pairs, truth_sizes, pred_sizes) == [(1, 5, pytest.approx(0.7))]
    assert match_instances(pairs, truth_sizes, pred_sizes, threshold=0.7) == [(1, 5, 0.7)]
    assert match_instances(pairs, truth_sizes, pred_sizes, threshold=0.75) == []


def test_an_exact_tie_at_iou_half_goes_to_the_higher_score():
    # truth 1 (4 voxels) = predictions 5 and 6 (2 voxels each) side by side: IoU exactly 1/2 each
    pairs = np.array([1 << 32 | 5, 1 << 32 | 6], np.uint64), np.array([2, 2])
    truth_sizes, pred_sizes = (
        (np.array([1], np.uint64), np.array([4])),
        (np.array([5, 6], np.uint64), np.array([2, 2])),
    )
    assert match_instances(pairs, truth_sizes, pred_sizes) == [(1, 5, 0.5)]  # lower id
    assert match_instances(pairs, truth_sizes, pred_sizes, scores=np.array([0.2, 0.7])) == [(1, 6, 0.5)]


def _read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_matches_file_lists_matched_pairs_then_unmatched_objects(tmp_path, small_blocks):
    truth, pred, labels = _sweep_volumes()
    _zarr(tmp_path / "labels.zarr", labels)
    _score(tmp_path, truth, pred, labels=tmp_path / "labels.zarr", matches_path=tmp_path / "matches.csv")
    rows = _read_csv(tmp_path / "matches.csv")
    # truth ids are the truth's 3D objects numbered by first appearance in block order: here T1 = 1,
    # T2 = 2, T3 = 3; z, y, x is the truth object's first voxel, or the prediction's without one
    assert [list(row.values()) for row in rows] == [
        ["20", "2", "1.0", "4", "4", "0", "3", "0"],  # best IoU first
        ["10", "1", "0.7", "7", "10", "0", "1", "0"],
        ["30", "", "", "4", "", "0", "7", "4"],  # the false positive
        ["", "3", "", "", "2", "0", "5", "0"],  # the missed truth object
    ]
    assert list(rows[0]) == ["prediction", "truth", "iou", "prediction_voxels", "truth_voxels", "z", "y", "x"]
    assert not list(tmp_path.glob(".*partial"))


def test_cli_writes_matches_and_ranks_by_probabilities(tmp_path, capsys):
    truth, pred, labels = _sweep_volumes()
    tifffile.imwrite(tmp_path / "truth.tif", truth * 255)
    _zarr(tmp_path / "pred.zarr", pred)
    probabilities = np.where(labels == 10, 0.9, np.where(labels == 30, 0.8, 0.6)).astype(np.float32)
    _zarr(tmp_path / "p.zarr", probabilities)
    argv = ["score", "--prediction", str(tmp_path / "pred.zarr"), "--truth", str(tmp_path / "truth.tif")]
    argv += ["--probabilities", str(tmp_path / "p.zarr"), "--matches", str(tmp_path / "m.csv")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| mSA (TP / (TP + FP + FN), mean over IoU 0.5:0.05:0.95) | 0.3500 |" in out
    assert "| AP (COCO 101-point, mean over IoU 0.5:0.05:0.95; by mean probability) | 0.3333 |" in out
    assert "| AP-75 (IoU >= 0.75) | 0.1122 |" in out  # 34/303
    assert f"wrote {tmp_path / 'm.csv'}" in out
    assert [row["iou"] for row in _read_csv(tmp_path / "m.csv")] == ["1.0", "0.7", "", ""]


def test_probabilities_of_another_shape_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    truth, pred, _ = _sweep_volumes()
    monkeypatch.chdir(tmp_path)
    _zarr(tmp_path / "pred.zarr", pred)
    _zarr(tmp_path / "truth.zarr", truth)
    _zarr(tmp_path / "p.zarr", np.zeros((2, 8, WIDTH), np.float32))
    argv = ["score", "--prediction", "pred.zarr", "--truth", "truth.zarr", "--probabilities", "p.zarr"]
    assert main([*argv, "--matches", "m.csv"]) == 2
    error = capsys.readouterr().err
    assert error.splitlines() == [
        "sam-mito score: error: p.zarr: probabilities has shape (2, 8, 12); expected (1, 8, 12) like the "
        "prediction pred.zarr"
    ]  # no progress bar: nothing was read
    assert not (tmp_path / "m.csv").exists()


def test_matches_never_overwrite_an_input(tmp_path, monkeypatch, capsys):
    truth, pred, _ = _sweep_volumes()
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite(tmp_path / "truth.tif", truth * 255)
    _zarr(tmp_path / "pred.zarr", pred)
    before = (tmp_path / "truth.tif").read_bytes()
    assert main(["score", "--prediction", "pred.zarr", "--truth", "truth.tif", "--matches", "truth.tif"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "sam-mito score: error: truth.tif: --matches is the same path as --truth; an output never overwrites "
        "an input"
    ]
    assert (tmp_path / "truth.tif").read_bytes() == before
