"""Cleaning the final mask: 3D size filter in bounded memory, per-slice hole filling and opening, defaults,
bad settings, and a killed size filter or a failed TIFF run leave nothing wrong behind."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from sam_mito.cli.main import main
from sam_mito.errors import SamMitoError
from sam_mito.inference import volume_prediction as predicting
from sam_mito.inference.postprocessing import (
    DEFAULT_MIN_SIZE,
    DEFAULT_MIN_SIZE_2D,
    PostProcessing,
    clean_slice,
    drop_small_objects,
)
from sam_mito.volumes import instances
from sam_mito.volumes.instances import STRUCTURE
from sam_mito.volumes.reading import open_volume
from sam_mito.volumes.volume import Volume
from tests._scripted import ScriptedSegmenter, index_stack


def _scene(depth=6, height=40, width=60):
    """Probability maps of three objects: a column through every slice (6 x 100 voxels), a thin object
    over three slices (3 x 40 = 120 voxels, 40 pixels in each) and a 2x2 speck in one slice."""
    maps = np.zeros((depth, height, width), np.float32)
    maps[:, 5:15, 5:15] = 0.9
    maps[1:4, 25:29, 20:30] = 0.9
    maps[3:4, 30:32, 50:52] = 0.9
    return maps


@pytest.mark.parametrize("output", ["mask.tif", "mask.zarr"])
def test_a_speck_under_the_size_limit_goes_and_objects_over_it_stay_counted_in_3d(tmp_path, output):
    maps = _scene()
    tifffile.imwrite(tmp_path / "stack.tif", index_stack(*maps.shape), photometric="minisblack")
    summary = predicting.predict_volume(
        ScriptedSegmenter(maps),
        tmp_path / "stack.tif",
        tmp_path / output,
        labels_path=tmp_path / "labels.tif",
        post=PostProcessing(z_window=1, min_size=100),
    )
    mask = open_volume(tmp_path / output).raw() > 0
    expected = maps > 0.5
    expected[3, 30:32, 50:52] = False  # 4 voxels: dropped; 120 voxels over 3 slices of 40 pixels: kept
    assert np.array_equal(mask, expected)
    assert (summary.objects_removed, summary.objects_kept, summary.instances) == (1, 2, 2)
    assert tifffile.imread(tmp_path / "labels.tif").max() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["stack.tif", output, "labels.tif"])


def test_in_a_single_image_the_size_limit_counts_pixels(tmp_path):
    maps = _scene(depth=1)
    maps[0, 25:29, 20:50] = 0.9  # 120 pixels
    maps[0, 33:38, 50:55] = 0.9  # 25 pixels
    tifffile.imwrite(tmp_path / "image.tif", index_stack(*maps.shape)[0])
    predicting.predict_volume(
        ScriptedSegmenter(maps),
        tmp_path / "image.tif",
        tmp_path / "mask.tif",
        post=PostProcessing(min_size=100),
    )
    mask = tifffile.imread(tmp_path / "mask.tif") > 0
    assert mask.shape == (40, 60)
    assert ndimage.label(mask)[1] == 2 and not mask[33:38, 50:55].any() and mask[25:29, 20:50].all()


def test_min_size_defaults_to_voxels_for_stacks_and_pixels_for_images():
    stack, image = (
        Volume.from_array(np.zeros((21, 8, 8), np.uint8)),
        Volume.from_array(np.zeros((8, 8), np.uint8)),
    )
    assert PostProcessing().for_volume(stack).min_size == DEFAULT_MIN_SIZE  # shallower: test_short_stacks.py
    assert PostProcessing().for_volume(image).min_size == DEFAULT_MIN_SIZE_2D
    assert DEFAULT_MIN_SIZE > DEFAULT_MIN_SIZE_2D > 0
    assert PostProcessing(min_size=7).for_volume(image).min_size == 7


def test_the_block_wise_filter_equals_labelling_the_whole_volume(monkeypatch):
    monkeypatch.setattr(instances, "BLOCK_VOXELS", 2 * 30 * 40)  # blocks of two slices
    rng = np.random.default_rng(4)
    volume = (ndimage.gaussian_filter(rng.random((9, 30, 40)), 1.2) > 0.52).astype(np.uint8) * 255
    labels, count = ndimage.label(volume > 0, structure=STRUCTURE)
    sizes = np.bincount(labels.ravel())
    expected = (volume > 0) & (sizes[labels] >= 30) & (labels > 0)
    assert 0 < (sizes[1:] < 30).sum() < count  # some objects go, some stay
    summary, blocks = drop_small_objects(Volume.from_array(volume), 30)
    blocks = list(blocks)
    assert [block[0] for block, _, _ in blocks] == [slice(z, min(z + 2, 9)) for z in range(0, 9, 2)]
    result = np.concatenate([mask for _, mask, _ in blocks])
    assert np.array_equal(result > 0, expected) and set(np.unique(result)) <= {0, 255}
    assert summary == {
        "objects_removed": int((sizes[1:] < 30).sum()),
        "objects_kept": int((sizes[1:] >= 30).sum()),
    }
    changed = [bool(((mask > 0) != (volume[block] > 0)).any()) for block, mask, _ in blocks]
    assert [flag for _, _, flag in blocks] == changed


def test_holes_are_filled_per_slice_and_an_opening_cuts_thin_bridges():
    ring = np.zeros((30, 60), np.float32)
    ring[2:28, 2:28] = 0.9
    ring[10:18, 10:18] = 0.1  # a hole
    ring[12:15, 28:40] = 0.9  # a 3-pixel bridge to a second square
    ring[5:25, 40:55] = 0.9
    kept = clean_slice(ring, PostProcessing(fill_holes=False))
    assert kept.dtype == np.uint8 and set(np.unique(kept)) == {0, 255} and not kept[10:18, 10:18].any()
    assert clean_slice(ring, PostProcessing(fill_holes=True))[10:18, 10:18].all()
    opened = clean_slice(ring, PostProcessing(fill_holes=True, opening=2)) > 0
    assert ndimage.label(opened)[1] == 2 and opened[10:18, 10:18].all()
    assert ndimage.label(clean_slice(ring, PostProcessing(opening=1)) > 0)[1] == 1  # radius 1 keeps 3 px


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"z_window": 4}, "z_window 4: expected an odd number"),
        ({"z_weighting": "median"}, "z_weighting 'median'"),
        ({"opening": -1}, "opening -1: expected a whole number >= 0"),
        ({"min_size": 2.5}, "min_size 2.5: expected a whole number"),
        ({"threshold": 1.5}, "threshold 1.5: expected a probability"),
    ],
)
def test_bad_settings_are_refused_before_any_work(tmp_path, kwargs, message):
    tifffile.imwrite(tmp_path / "stack.tif", index_stack(2, 8, 8), photometric="minisblack")
    segmenter = ScriptedSegmenter(np.zeros((2, 8, 8)))
    with pytest.raises(SamMitoError, match=message):
        predicting.predict_volume(
            segmenter, tmp_path / "stack.tif", tmp_path / "mask.zarr", post=PostProcessing(**kwargs)
        )
    assert segmenter.calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]


@pytest.mark.parametrize(("flag", "value"), [("--z-window", "4"), ("--z-window", "0"), ("--opening", "-2")])
def test_the_cli_names_a_bad_flag(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", "m", "--input", "i.tif", "--out", "o.tif", flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: {value}: expected" in capsys.readouterr().err


def test_predict_flags_default_to_the_measured_settings():
    from sam_mito.cli.main import build_parser

    args = build_parser().parse_args(["predict", "--model", "m", "--input", "i", "--out", "o"])
    defaults = PostProcessing()
    assert (args.z_window, args.z_weighting) == (defaults.z_window, defaults.z_weighting)
    assert (args.opening, args.fill_holes, args.min_size) == (defaults.opening, defaults.fill_holes, None)
    assert (
        build_parser()
        .parse_args(["predict", "--model", "m", "--input", "i", "--out", "o", "--no-fill-holes"])
        .fill_holes
        is False
    )


class _Interrupted(Exception):
    pass


def test_a_size_filter_killed_half_way_is_finished_by_running_the_command_again(tmp_path, monkeypatch):
    monkeypatch.setattr(instances, "BLOCK_VOXELS", 1)  # one slice per block (chunks are one slice deep)
    maps = _scene()
    maps[0, 30:32, 30:32] = maps[5, 30:32, 30:32] = 0.9  # specks in the first and last slices
    tifffile.imwrite(tmp_path / "stack.tif", index_stack(*maps.shape), photometric="minisblack")
    kwargs = {"post": PostProcessing(z_window=1, min_size=100), "labels_path": tmp_path / "labels.zarr"}
    predicting.predict_volume(
        ScriptedSegmenter(maps), tmp_path / "stack.tif", tmp_path / "mask.zarr", **kwargs
    )
    finished = open_volume(tmp_path / "mask.zarr").raw()
    labels = open_volume(tmp_path / "labels.zarr").raw()

    real = predicting.drop_small_objects

    def dies_after_the_first_changed_block(mask, min_size, **kwargs):
        summary, blocks = real(mask, min_size, **kwargs)

        def some():
            for block, filtered, changed in blocks:
                yield block, filtered, changed
                if changed:
                    raise _Interrupted

        return summary, some()

    monkeypatch.setattr(predicting, "drop_small_objects", dies_after_the_first_changed_block)
    with pytest.raises(_Interrupted):
        predicting.predict_volume(
            ScriptedSegmenter(maps), tmp_path / "stack.tif", tmp_path / "mask.zarr", overwrite=True, **kwargs
        )
    partly = open_volume(tmp_path / "mask.zarr").raw()
    assert not np.array_equal(partly, finished) and (partly[0] == finished[0]).all()  # slice 0 filtered only
    monkeypatch.setattr(predicting, "drop_small_objects", real)
    again = ScriptedSegmenter(maps)
    predicting.predict_volume(again, tmp_path / "stack.tif", tmp_path / "mask.zarr", **kwargs)
    assert again.calls == []  # every slice was complete: only the filter and the labels ran again
    assert np.array_equal(open_volume(tmp_path / "mask.zarr").raw(), finished)
    assert np.array_equal(open_volume(tmp_path / "labels.zarr").raw(), labels)


def test_a_tiff_run_that_fails_in_the_size_filter_leaves_nothing(tmp_path, monkeypatch):
    maps = _scene()
    tifffile.imwrite(tmp_path / "stack.tif", index_stack(*maps.shape), photometric="minisblack")

    def fails(mask, min_size, **kwargs):
        raise _Interrupted

    monkeypatch.setattr(predicting, "drop_small_objects", fails)
    with pytest.raises(_Interrupted):
        predicting.predict_volume(
            ScriptedSegmenter(maps),
            tmp_path / "stack.tif",
            tmp_path / "mask.tif",
            probabilities_path=tmp_path / "p.tif",
            post=PostProcessing(min_size=10),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]
