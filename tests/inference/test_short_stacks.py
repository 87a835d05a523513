"""The size filter judges objects by what the stack can show, and a filter that empties the mask says so.

A stack of a few slices cannot hold 15000 voxels of an object crossing it. So an object that
crosses every slice is also kept when its mean cross-section has ``min_area`` pixels (500 by
default), and the default ``min_size`` is 15000 voxels from 21 slices deep, 15000 × depth / 21
below: a 2-slice stack keeps mitochondria the fixed limit dropped, and a deep stack still drops
debris under 15000 voxels. Measured on real EPFL stacks by ``benchmarks/shortstacks.py``.
"""

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from sam_mito.cli.predict import _print_summary
from sam_mito.defaults import CONTIGUOUS_CONTINUITY
from sam_mito.inference import volume_prediction as predicting
from sam_mito.inference.pipeline import segment_volume
from sam_mito.inference.postprocessing import (
    PostProcessing,
    SizeLimits,
    default_min_size,
    drop_small_objects,
    size_limits,
    z_continuity,
)
from sam_mito.volumes import instances, omezarr
from sam_mito.volumes.omezarr import create_image
from sam_mito.volumes.reading import open_volume
from sam_mito.volumes.volume import Volume
from tests._scripted import ScriptedSegmenter, index_stack

#: ceil(15000 * depth / 21) below 21 slices, worked out by hand.
EXPECTED_DEFAULTS = {1: 715, 2: 1429, 3: 2143, 5: 3572, 8: 5715, 20: 14286, 21: 15000, 22: 15000, 165: 15000}


def test_the_default_limit_is_15000_voxels_from_21_slices_and_its_share_per_slice_below():
    assert {depth: default_min_size(depth) for depth in EXPECTED_DEFAULTS} == EXPECTED_DEFAULTS
    for depth, expected in EXPECTED_DEFAULTS.items():
        stack = Volume.from_array(np.zeros((depth, 8, 8), np.uint8))
        resolved = PostProcessing().for_volume(stack)
        assert (resolved.min_size, resolved.min_area) == (expected, 500)
        assert PostProcessing(min_size=15000).for_volume(stack).min_size == 15000  # a number given is kept
    image = PostProcessing().for_volume(Volume.from_array(np.zeros((8, 8), np.uint8)))
    assert (image.min_size, image.min_area) == (500, 0)  # an image: its pixels alone


def _segment(maps: np.ndarray, post: PostProcessing | None = None):
    """``segment_volume`` of scripted probability maps (default post-processing unless ``post``)."""
    return segment_volume(ScriptedSegmenter(maps), index_stack(*maps.shape), post=post, labels=False)


def _box(shape, *boxes) -> np.ndarray:
    """A boolean volume, True inside each ``(zs, ys, xs)`` box."""
    volume = np.zeros(shape, bool)
    for box in boxes:
        volume[box] = True
    return volume


def test_a_two_slice_stack_keeps_the_mitochondria_the_fixed_limit_dropped():
    shape = (2, 64, 96)
    thin = np.s_[:, 5:25, 5:35]  # 600 pixels a slice: 1200 voxels, under 1429 but 600 >= 500 a slice
    wide = np.s_[:, 30:60, 5:45]  # 1200 pixels a slice: 2400 voxels >= 1429
    speck = np.s_[:, 40:55, 60:80]  # 300 pixels a slice: 600 voxels, under both limits
    maps = _box(shape, thin, wide, speck).astype(np.float32) * 0.9
    result = _segment(maps)  # default z-window: both slices average the two maps
    assert np.array_equal(result.mask > 0, _box(shape, thin, wide))
    assert (result.summary.objects_removed, result.summary.objects_kept) == (1, 2)
    post = result.summary.postprocessing
    assert (post["min_size"], post["min_area"]) == (1429, 500)
    assert result.summary.warnings == []
    depth_only = _segment(maps, PostProcessing(min_area=0))  # without the cross-section rule
    assert np.array_equal(depth_only.mask > 0, _box(shape, wide))
    fixed = _segment(maps, PostProcessing(min_size=15000, min_area=0))  # the rule before: nothing left
    assert not fixed.mask.any() and fixed.summary.objects_kept == 0


def test_a_deep_stack_still_drops_debris_under_15000_voxels_that_a_short_stack_would_keep():
    shape = (24, 64, 96)
    mitochondrion = np.s_[:, 2:32, 2:32]  # crosses all 24 slices: 24 x 900 = 21600 voxels
    slender = np.s_[:, 2:24, 40:65]  # crosses them all, 550 pixels a slice: 13200 voxels
    thread = np.s_[:, 40:60, 2:22]  # crosses them all, 400 pixels a slice: 9600 voxels
    debris = np.s_[8:16, 34:64, 40:70]  # slices 8..15, 900 pixels a slice: 7200 voxels
    maps = _box(shape, mitochondrion, slender, thread, debris).astype(np.float32) * 0.9
    result = _segment(maps)  # the default z-window (7, mean) keeps every extent in z at 0.9
    assert np.array_equal(result.mask > 0, _box(shape, mitochondrion, slender))
    assert result.summary.postprocessing["min_size"] == 15000
    assert (result.summary.objects_removed, result.summary.objects_kept) == (2, 2)
    two_slices = _segment(maps[8:10])  # the same debris in a 2-slice stack: 1800 voxels, all it can show
    kept = _box(maps[8:10].shape, mitochondrion, slender, np.s_[:, 34:64, 40:70])
    assert np.array_equal(two_slices.mask > 0, kept)  # the thread's 800 voxels are under 1000 and 1429


def test_objects_crossing_the_stack_are_found_across_block_and_chunk_faces(tmp_path, monkeypatch):
    shape = (6, 40, 48)
    crossing = np.s_[:, 10:30, 10:20]  # every slice, 200 pixels a slice, over four chunks in y and x
    short = np.s_[0:5, 30:40, 22:46]  # slices 0..4 only, 240 pixels a slice: 1200 voxels >= 150 x 6
    faint = np.s_[:, 0:5, 30:46]  # every slice, 80 pixels a slice
    mask = _box(shape, crossing, short, faint)
    monkeypatch.setattr(omezarr, "CHUNK_SIDE", 16)
    create_image(tmp_path / "mask.zarr", shape, np.uint8)[:] = mask.astype(np.uint8) * 255
    volume = open_volume(tmp_path / "mask.zarr")
    assert volume.chunks == (1, 16, 16)
    monkeypatch.setattr(instances, "BLOCK_SIDE", 16)
    monkeypatch.setattr(instances, "BLOCK_VOXELS", 2 * 16 * 16)  # blocks of 2 x 16 x 16: 3 x 3 x 3 of them
    summary, blocks = drop_small_objects(volume, 5000, min_area=150)
    filtered = np.zeros(shape, bool)
    for block, kept, _ in blocks:
        filtered[block] = kept > 0
    assert np.array_equal(filtered, _box(shape, crossing))
    assert summary == {"objects_removed": 2, "objects_kept": 1}


@pytest.mark.parametrize("output", ["mask.tif", "mask.zarr"])
def test_a_filter_that_removes_every_object_warns_in_the_summary_and_the_log(tmp_path, output, caplog):
    shape = (3, 40, 60)
    maps = _box(shape, np.s_[:, 5:25, 5:25], np.s_[:, 30:35, 40:50]).astype(np.float32) * 0.9
    tifffile.imwrite(tmp_path / "stack.tif", index_stack(*shape), photometric="minisblack")
    with caplog.at_level(logging.WARNING, logger="sam_mito"):  # 400 and 50 pixels a slice: under 500
        summary = predicting.predict_volume(
            ScriptedSegmenter(maps), tmp_path / "stack.tif", tmp_path / output
        )
    assert not open_volume(tmp_path / output).raw().any()
    assert summary.warnings == [
        "the size filter removed all 2 objects found, so the mask is empty (objects under 2143 voxels go, "
        "and those crossing all 3 slices under 500 pixels per slice): --min-size 0 keeps every object, a "
        "smaller --min-size or --min-area keeps more (slices far apart, as in serial sections, hold fewer "
        "voxels of each object than contiguous slices)"
    ]
    assert summary.to_dict()["warnings"] == summary.warnings
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == summary.warnings


def test_a_single_image_emptied_by_the_filter_warns_in_pixels(tmp_path):
    maps = _box((1, 40, 60), np.s_[:, 5:25, 5:25]).astype(np.float32) * 0.9  # 400 pixels < 500
    tifffile.imwrite(tmp_path / "image.tif", index_stack(*maps.shape)[0])
    summary = predicting.predict_volume(
        ScriptedSegmenter(maps), tmp_path / "image.tif", tmp_path / "mask.tif"
    )
    assert summary.warnings == [
        "the size filter removed all 1 objects found, so the mask is empty (each under 500 pixels): "
        "--min-size 0 keeps every object, a smaller --min-size keeps more"
    ]


def test_no_warning_when_the_filter_keeps_an_object_or_finds_none():
    shape = (3, 40, 60)
    assert _segment(np.zeros(shape, np.float32)).summary.warnings == []  # nothing found: nothing removed
    maps = _box(shape, np.s_[:, 5:35, 5:35], np.s_[:, 36:38, 40:42]).astype(np.float32) * 0.9
    summary = _segment(maps).summary
    assert (summary.objects_removed, summary.objects_kept, summary.warnings) == (1, 1, [])


def test_z_continuity_counts_the_voxels_that_continue_into_the_next_slice():
    mask = np.zeros((3, 5, 6), np.uint8)  # (a last axis of 3 or 4 would read as colour channels)
    mask[0, 0, :4] = 255  # 4 voxels, 2 of them continue into slice 1
    mask[1, 0, :2] = mask[1, 3, 3] = 255  # 3 voxels, 1 continues into slice 2
    mask[2, 3, 3] = 255  # the last slice is not counted
    assert z_continuity(Volume.from_array(mask)) == 3 / 7
    assert z_continuity(Volume.from_array(mask[:1])) is None  # one slice: nothing to continue into
    assert z_continuity(Volume.from_array(np.zeros((2, 3, 3), np.uint8))) is None
    assert z_continuity(Volume.from_array(np.zeros((3, 3), np.uint8))) is None  # a single image


def test_default_limits_shrink_with_the_slice_spacing_and_given_limits_do_not():
    shape = (8, 60, 60)
    stack = Volume.from_array(np.zeros(shape, np.uint8))
    sparse = np.zeros(shape, np.uint8)
    for z in range(0, 8, 2):  # objects 2 slices deep, each pair elsewhere: 4 of 7 slices continue
        x = 5 + (z // 2 % 2) * 30
        sparse[z : z + 2, 5:25, x : x + 20] = 255
    contiguous = np.zeros(shape, np.uint8)
    contiguous[:, 5:45, 5:45] = 255  # every voxel but the last slice's continues
    default = PostProcessing().for_volume(stack)
    assert default.spacing_scale and default.min_size == 5715
    limits = size_limits(Volume.from_array(sparse), default)
    scale = (1 - CONTIGUOUS_CONTINUITY) / (1 - 4 / 7)  # 4 of 7 counted slices' voxels continue
    assert limits.continuity == 4 / 7 and limits.scale == pytest.approx(scale)
    assert (limits.min_size, limits.min_area) == (int(np.ceil(5715 * scale)), int(np.ceil(500 * scale)))
    assert size_limits(Volume.from_array(contiguous), default) == SizeLimits(5715, 500, 1.0)
    given = PostProcessing(min_size=5715).for_volume(stack)
    assert not given.spacing_scale
    assert size_limits(Volume.from_array(sparse), given) == SizeLimits(5715, 500)
    image = PostProcessing().for_volume(Volume.from_array(np.zeros((8, 8), np.uint8)))
    assert not image.spacing_scale


def test_serial_sections_keep_their_mitochondria_and_the_summary_says_why(capsys):
    shape = (8, 64, 64)
    maps = np.zeros(shape, np.float32)
    for z in range(8):  # a different 1000-pixel section in each slice, as in slices 65 nm apart
        maps[z, 4 + (z % 2) * 30 : 29 + (z % 2) * 30, 4 + (z // 2) * 14 : 44 + (z // 2) * 5] = 0.9
    post = PostProcessing(z_window=1)
    result = _segment(maps, post)
    assert (result.summary.objects_removed, result.summary.objects_kept) == (0, 8)
    assert result.summary.size_limits["scale"] < 1 and result.summary.size_limits["continuity"] == 0
    _print_summary(SimpleNamespace(out="mask.zarr", labels_out=None), result.summary.to_dict())
    assert (
        "limits x 0.05: objects continue into the next slice for 0.00 of their voxels"
        in capsys.readouterr().out
    )
    fixed = _segment(maps, PostProcessing(z_window=1, min_size=5715))  # the depth's limit alone
    assert fixed.summary.objects_kept == 0 and fixed.summary.warnings
