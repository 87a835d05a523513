"""Box prompts from hand-drawn masks, and jitter."""

import numpy as np
import pytest
import torch

from sam_mito.data.prompts import instance_boxes, jitter_boxes, label_instances, tile_box, union_box


def test_union_box_is_inclusive_xyxy():
    mask = np.zeros((8, 10), np.uint8)
    mask[2:4, 3:6] = 1
    mask[6, 8] = 1
    assert union_box(mask) == [3, 2, 8, 6]


def test_union_box_of_empty_mask_raises():
    with pytest.raises(ValueError, match="no foreground"):
        union_box(np.zeros((4, 4), np.uint8))


def test_two_instances_touching_at_a_corner_stay_separate():
    mask = np.zeros((6, 6), np.uint8)
    mask[0:2, 0:2] = 1
    mask[2:4, 2:4] = 1  # shares only the corner (1,1)-(2,2)
    boxes, ids = instance_boxes(mask)
    assert boxes == [[0, 0, 1, 1], [2, 2, 3, 3]]
    labels = label_instances(mask)
    assert [int((labels == i).sum()) for i in ids] == [4, 4]


def test_two_instances_sharing_an_edge_merge_into_one():
    mask = np.zeros((6, 6), np.uint8)
    mask[0:2, 0:2] = 1
    mask[0:2, 2:4] = 1
    assert instance_boxes(mask)[0] == [[0, 0, 3, 1]]


def test_object_on_the_tile_border_reaches_the_edge():
    mask = np.zeros((5, 5), np.uint8)
    mask[3:5, 4] = 1
    assert union_box(mask) == [4, 3, 4, 4]
    assert instance_boxes(mask)[0] == [[4, 3, 4, 4]]


def test_small_slivers_get_no_instance_box():
    mask = np.zeros((8, 8), np.uint8)
    mask[0, 0] = 1
    mask[4:8, 4:8] = 1
    boxes, ids = instance_boxes(mask, min_pixels=2)
    assert boxes == [[4, 4, 7, 7]] and ids == [2]


def test_tile_box_covers_the_tile():
    assert tile_box(256, 128) == [0, 0, 127, 255]


def test_jitter_moves_each_side_within_bounds_and_keeps_order():
    boxes = torch.tensor([[[10.0, 10.0, 20.0, 20.0], [0.0, 0.0, 31.0, 31.0]]])
    out = jitter_boxes(boxes, max_shift=5, size=(32, 32), generator=torch.Generator().manual_seed(0))
    assert (out - boxes).abs().max() <= 5
    assert out.min() >= 0 and out.max() <= 31
    assert torch.all(out[..., 0] <= out[..., 2]) and torch.all(out[..., 1] <= out[..., 3])
    again = jitter_boxes(boxes, max_shift=5, size=(32, 32), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, boxes)
