"""Inference on whole slices and volumes: tiling, seamless stitching, streaming, prompts, bad input."""

import json
import re

import numpy as np
import pytest
import tifffile
from PIL import Image

from sam_mito.cli.main import main
from sam_mito.data.synthetic import synthetic_volume
from sam_mito.errors import SamMitoError
from sam_mito.inference.pipeline import read_boxes
from sam_mito.inference.postprocessing import PostProcessing
from sam_mito.inference.segmenter import (
    Segmenter,
    stitch,
    tile_origins,
)
from sam_mito.inference.volume_prediction import predict_volume
from sam_mito.models.loading import load_sam
from sam_mito.volumes.reading import open_volume


@pytest.fixture(scope="module")
def stack_path(tmp_path_factory):
    images, _ = synthetic_volume((3, 200, 300), seed=4)
    path = tmp_path_factory.mktemp("stack") / "stack.tif"
    tifffile.imwrite(path, images, photometric="minisblack")
    return path


def _echo_segmenter(model_dir, **kwargs):
    """A segmenter whose 'model' returns each tile's own pixels / 255: stitching must reproduce the image."""
    segmenter = Segmenter(*load_sam(str(model_dir)), **kwargs)
    segmenter._tile_probability = lambda window, boxes: window.astype(np.float32) / 255
    return segmenter


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "expected"),
    [
        (700, 256, 32, [0, 224, 444]),  # steps of 256 - 32 = 224; the last tile ends at 700
        (600, 256, 0, [0, 256, 344]),  # the last tile moved back from 512 to end at 600
        (512, 256, 0, [0, 256]),  # an exact fit: nothing moved
        (257, 256, 32, [0, 1]),  # one pixel too long: a second tile one pixel on
    ],
)
def test_tiles_cover_the_length_with_at_least_the_overlap(length, tile, overlap, expected):
    assert tile_origins(length, tile, overlap) == expected


def test_short_lengths_get_one_tile_and_bad_overlap_is_an_error():
    assert tile_origins(100, 256, 32) == [0]
    with pytest.raises(SamMitoError, match="overlap 256"):
        tile_origins(500, 256, 256)


def test_stitching_agreeing_tiles_is_exact_and_disagreeing_tiles_blend_smoothly():
    ramp = np.add.outer(np.arange(300.0), 2 * np.arange(400.0)).astype(np.float32)
    origins = [(y, x) for y in (0, 96, 172) for x in (0, 96, 192, 272)]  # 128-px tiles, steps of 96
    exact = stitch(ramp.shape, ((y, x, ramp[y : y + 128, x : x + 128]) for y, x in origins), overlap=32)
    np.testing.assert_allclose(exact, ramp, rtol=1e-6)

    left_right = [(0, 0, np.zeros((128, 128))), (0, 96, np.ones((128, 128)))]
    blended = stitch((128, 224), iter(left_right), overlap=32)
    row = blended[64]
    assert row[0] == 0 and row[-1] == 1
    assert np.all(np.diff(row) >= 0) and np.abs(np.diff(row)).max() < 0.1  # no step at a tile border


@pytest.mark.parametrize("shape", [(300, 500), (100, 180), (256, 256)])
def test_tiled_prediction_reassembles_the_slice_for_any_size(tiny_model_dir, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    segmenter = _echo_segmenter(tiny_model_dir, tile=128, overlap=16)
    np.testing.assert_allclose(segmenter.probabilities(image), image / 255, atol=1e-6)


def test_tile_size_defaults_to_the_training_patch_size(tiny_model_dir):
    model, processor = load_sam(str(tiny_model_dir))
    assert Segmenter(model, processor).tile == 256
    model.config.sam_mito = {"patch_size": 192, "prompt_mode": "tile"}
    assert Segmenter(model, processor).tile == 192
    assert Segmenter(model, processor, tile=128).tile == 128


@pytest.mark.parametrize("mode", ["tile", "grid"])
def test_prompt_free_modes_give_probabilities_with_one_encoder_pass_per_tile(tiny_model_dir, mode):
    image = np.random.default_rng(1).integers(0, 256, (300, 500), dtype=np.uint8)
    segmenter = Segmenter(*load_sam(str(tiny_model_dir)), mode=mode, tile=256, overlap=32)
    probability = segmenter.probabilities(image)
    assert probability.shape == image.shape and probability.dtype == np.float32
    assert 0 <= probability.min() and probability.max() <= 1
    assert segmenter.encoder_passes == 2 * 3  # rows at y = 0, 44; columns at x = 0, 224, 244


def test_box_mode_encodes_only_tiles_a_box_touches(tiny_model_dir):
    image = np.random.default_rng(2).integers(0, 256, (256, 768), dtype=np.uint8)
    segmenter = Segmenter(*load_sam(str(tiny_model_dir)), mode="boxes", tile=256, overlap=0)
    probability = segmenter.probabilities(image, [[10, 20, 100, 120]])
    assert segmenter.encoder_passes == 1
    assert np.all(probability[:, 256 + segmenter.halo :] == 0)  # beyond the one window encoded
    assert probability[:, :256].max() > 0
    with pytest.raises(SamMitoError, match="needs boxes"):
        segmenter.probabilities(image)


def test_segment_thresholds_fills_holes_and_drops_small_objects_as_predict_does(monkeypatch, tiny_model_dir):
    probability = np.zeros((6, 6), dtype=np.float32)
    probability[0:3, 0:3] = 0.9  # 9 pixels, with a hole at (1, 1)
    probability[1, 1] = 0.1
    probability[5, 5] = 0.8  # 1 pixel
    probability[4, 0] = 0.4  # below the threshold
    segmenter = Segmenter(*load_sam(str(tiny_model_dir)))
    monkeypatch.setattr(segmenter, "probabilities", lambda image, boxes=None: probability)
    mask = segmenter.segment(np.zeros((6, 6), np.uint8), post=PostProcessing(min_size=2))
    expected = np.zeros((6, 6), np.uint8)
    expected[0:3, 0:3] = 255  # hole filled, the 1-pixel object dropped
    np.testing.assert_array_equal(mask, expected)
    unfiltered = segmenter.segment(
        np.zeros((6, 6), np.uint8), post=PostProcessing(min_size=0, fill_holes=False)
    )
    assert unfiltered[5, 5] == 255 and unfiltered[1, 1] == 0


def test_boxes_json_forms(tmp_path):
    every = tmp_path / "every.json"
    every.write_text(json.dumps([[0, 0, 9, 9]]))
    assert read_boxes(every, (3, 20, 30)) == {0: [[0, 0, 9, 9]], 1: [[0, 0, 9, 9]], 2: [[0, 0, 9, 9]]}
    per_slice = tmp_path / "per_slice.json"
    per_slice.write_text(json.dumps({"2": [[1, 2, 3, 4], [5, 5, 29, 19]]}))
    assert read_boxes(per_slice, (3, 20, 30)) == {2: [[1, 2, 3, 4], [5, 5, 29, 19]]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[0, 0, 10", "cannot read boxes JSON"),
        ('{"5": [[0, 0, 1, 1]]}', "slice key '5'"),
        ('{"a": [[0, 0, 1, 1]]}', "slice key 'a'"),
        ("[[0, 0, 1]]", r"box \[0, 0, 1\] is not"),
        ("[[0, 0, 30, 10]]", "outside the 30x20 image"),
        ("[[5, 0, 2, 10]]", "outside"),
        ('"boxes"', "expected a list of boxes"),
    ],
)
def test_bad_boxes_json_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "boxes.json"
    path.write_text(content)
    with pytest.raises(SamMitoError, match=message):
        read_boxes(path, (3, 20, 30))


def test_streamed_volume_equals_per_slice_calls(tiny_model_dir, stack_path, tmp_path):
    segmenter = Segmenter(*load_sam(str(tiny_model_dir)), tile=128, overlap=16)
    out, probs = tmp_path / "pred.tif", tmp_path / "prob.tif"
    per_slice = PostProcessing(z_window=1, min_size=0)  # each slice on its own, as segment() sees it
    summary = predict_volume(segmenter, stack_path, out, probabilities_path=probs, post=per_slice)
    images = tifffile.imread(stack_path)
    written, written_probs = tifffile.imread(out), tifffile.imread(probs)
    assert tuple(summary.shape) == images.shape == written.shape == written_probs.shape
    assert written.dtype == np.uint8 and written_probs.dtype == np.float32
    for image, mask, probability in zip(images, written, written_probs, strict=True):
        np.testing.assert_array_equal(probability, segmenter.probabilities(image))
        np.testing.assert_array_equal(mask, segmenter.segment(image, post=per_slice))


def test_slices_are_read_lazily_from_folders_and_tiff_pages(stack_path, tmp_path):
    images = tifffile.imread(stack_path)
    folder = tmp_path / "slices"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"z{index:03d}.png")
    for source in (stack_path, folder):
        volume = open_volume(source)
        assert volume.shape == images.shape
        np.testing.assert_array_equal(np.stack(list(volume.slices())), images)


def test_cli_predicts_a_stack_and_a_single_image_with_the_same_shape(tiny_model_dir, stack_path, tmp_path):
    out = tmp_path / "pred.tif"
    assert (
        main(["predict", "--model", str(tiny_model_dir), "--input", str(stack_path), "--out", str(out)]) == 0
    )
    assert tifffile.imread(out).shape == tifffile.imread(stack_path).shape
    png = tmp_path / "slice.png"
    Image.fromarray(tifffile.imread(stack_path)[0]).save(png)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([[20, 30, 120, 150]]))
    single = tmp_path / "single.tif"
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(png), "--out", str(single)]
    assert main([*argv, "--boxes", str(boxes), "--tile", "128"]) == 0
    mask = tifffile.imread(single)
    assert mask.shape == (200, 300) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    as_png = tmp_path / "single.png"  # the format follows the name: a real PNG, the same mask
    assert main([*argv[:-1], str(as_png), "--boxes", str(boxes), "--tile", "128"]) == 0
    assert as_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(as_png)), mask)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (
            "mask.png",
            "--out is a PNG, which holds one 2D image, but .* is a stack of 3 slices; write .tif or .zarr",
        ),
        ("mask.jpg", "--out must end in .zarr or .tif / .tiff / .png; .jpg is not a format"),
    ],
)
def test_an_output_name_whose_format_cannot_hold_the_result_is_refused(
    tiny_model_dir, stack_path, tmp_path, capsys, out, message
):
    argv = [
        "predict",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(stack_path),
        "--out",
        str(tmp_path / out),
    ]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / out).exists()


def _bad_inputs(tmp_path, tiny_model_dir, stack_path):
    four_d = tmp_path / "4d.tif"
    tifffile.imwrite(four_d, np.zeros((2, 2, 8, 8), dtype=np.uint8), metadata={"axes": "TZYX"})
    empty = tmp_path / "empty"
    empty.mkdir()
    not_sam = tmp_path / "not_sam"
    not_sam.mkdir()
    (not_sam / "config.json").write_text(json.dumps({"model_type": "bert"}))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps([[0, 0, 999, 10]]))
    model, stack = str(tiny_model_dir), str(stack_path)
    return [
        (model, str(four_d), [], "expected \\(H, W\\) or \\(slices, H, W\\)"),
        (model, str(empty), [], "holds no PNG/TIFF slices"),
        (str(not_sam), stack, [], "expected a SAM checkpoint"),
        (model, stack, ["--boxes", str(outside)], "outside the 300x200 image"),
        (model, stack, ["--prompt-mode", "boxes"], "needs a boxes JSON"),
    ]


def test_bad_input_is_one_clear_error_and_writes_nothing(tiny_model_dir, stack_path, tmp_path, capsys):
    for model, source, extra, message in _bad_inputs(tmp_path, tiny_model_dir, stack_path):
        out = tmp_path / "pred.tif"
        status = main(["predict", "--model", model, "--input", source, "--out", str(out), *extra])
        error = capsys.readouterr().err
        assert status == 2, message
        errors = [line for line in error.splitlines() if "error" in line]
        assert len(errors) == 1 and "Traceback" not in error
        assert re.search(message, errors[0]), error
        assert list(tmp_path.glob("*pred.tif*")) == []


@pytest.mark.parametrize(
    ("overlap", "halo", "cores_only"), [(0, 32, False), (16, 20, False), (0, 32, True), (0, 300, True)]
)
def test_context_margin_windows_reassemble_the_slice(tiny_model_dir, overlap, halo, cores_only):
    image = np.random.default_rng(3).integers(0, 256, (300, 500), dtype=np.uint8)
    segmenter = _echo_segmenter(tiny_model_dir, tile=128, overlap=overlap, halo=halo, cores_only=cores_only)
    seen = []
    echo = segmenter._tile_probability
    segmenter._tile_probability = lambda window, boxes: seen.append(window.shape) or echo(window, boxes)
    np.testing.assert_allclose(segmenter.probabilities(image), image / 255, atol=1e-6)
    assert set(seen) == {(128 + 2 * halo, 128 + 2 * halo)}  # every pass sees the tile and its margin


def test_a_768x1024_slice_costs_12_encoder_passes_at_the_default_tile(tiny_model_dir):
    segmenter = Segmenter(*load_sam(str(tiny_model_dir)), tile=256)
    segmenter.probabilities(np.zeros((768, 1024), np.uint8))
    assert segmenter.encoder_passes == 12


def test_blended_margins_leave_no_step_at_a_tile_border(tiny_model_dir):
    image = np.zeros((128, 256), np.uint8)
    segmenter = _echo_segmenter(tiny_model_dir, tile=128, overlap=0, halo=32)
    calls = []

    def first_window_says_0_then_1(window, boxes):
        calls.append(window.shape)
        return np.full(window.shape, float(len(calls) > 1), np.float32)

    segmenter._tile_probability = first_window_says_0_then_1
    row = segmenter.probabilities(image)[64]
    assert row[0] == 0 and row[-1] == 1 and calls == [(192, 192)] * 2
    assert np.all(np.diff(row) >= 0) and np.abs(np.diff(row)).max() < 0.05  # a ramp across 64 px, no step
    segmenter.cores_only = True
    calls.clear()
    assert np.abs(np.diff(segmenter.probabilities(image)[64])).max() == 1  # cores only: a step at x = 128
