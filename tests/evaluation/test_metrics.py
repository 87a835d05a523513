"""Dice and IoU on tiny hand-computed masks."""

import numpy as np
import pytest

from sam_mito.errors import SamMitoError
from sam_mito.evaluation.metrics import dice_iou, load_metric


def test_single_image_by_hand():
    pred = np.array([[1, 1, 0, 0]])
    ref = np.array([[1, 0, 1, 0]])
    scores = dice_iou(pred, ref)  # intersection 1, |pred| 2, |ref| 2, union 3
    assert scores["dice"] == pytest.approx(0.5)
    assert scores["iou"] == pytest.approx(1 / 3)
    assert scores["n_images"] == 1


def test_per_image_mean_differs_from_pooled():
    pred = np.array([[[1, 1, 1, 1]], [[0, 0, 0, 0]]])
    ref = np.array([[[1, 1, 1, 1]], [[0, 0, 0, 1]]])
    scores = dice_iou(pred, ref)
    assert scores["iou"] == pytest.approx((1.0 + 0.0) / 2)
    assert scores["pooled_iou"] == pytest.approx(4 / 5)
    assert scores["pooled_dice"] == pytest.approx(2 * 4 / (4 + 5))


def test_empty_versus_empty_scores_as_told():
    empty = np.zeros((1, 3, 3))
    assert dice_iou(empty, empty)["dice"] == 1.0
    assert dice_iou(empty, empty, empty_score=0.0)["iou"] == 0.0
    assert dice_iou(empty, np.ones((1, 3, 3)))["dice"] == 0.0


def test_evaluate_module_loads_offline_and_matches_the_functions():
    metric = load_metric()
    predictions = [[[1, 1], [0, 0]], [[0, 0, 0]]]  # images of different shapes are fine
    references = [[[1, 0], [0, 0]], [[0, 0, 0]]]
    scores = metric.compute(predictions=predictions, references=references, empty_score=0.0)
    # image 1: intersection 1, |pred| 2, |ref| 1; image 2: both empty, scored 0.0 per image
    assert scores["dice"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert scores["iou"] == pytest.approx((1 / 2 + 0.0) / 2)
    assert scores["pooled_dice"] == pytest.approx(2 / 3) and scores["pooled_iou"] == pytest.approx(1 / 2)


def test_shape_mismatch_names_both_shapes_in_order():
    # (2, 3) against its transpose: each shape is named, the prediction's first
    with pytest.raises(SamMitoError, match=r"prediction shape \(2, 3\) != reference shape \(3, 2\)") as err:
        dice_iou(np.zeros((2, 3)), np.zeros((3, 2)))
    assert isinstance(err.value, ValueError)  # callers catching ValueError still catch it
