"""One prediction pipeline: Python (`segment_volume`, `Segmenter.segment`) and `sam-mito predict` give
the same bytes; a Segmenter's settings travel with its model folder; summaries are typed."""

import json
from unittest import mock

import numpy as np
import pytest
import tifffile

from sam_mito import PostProcessing, Segmenter, segment_volume
from sam_mito.data.synthetic import synthetic_volume
from sam_mito.defaults import TINY_BASE
from sam_mito.hub.cards import INFERENCE_CONFIG
from sam_mito.inference.pipeline import PredictionSummary

POST = PostProcessing(min_size=20)  # small enough that this short stack keeps objects


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    images, _ = synthetic_volume((3, 96, 128), seed=3)
    path = tmp_path_factory.mktemp("stack") / "stack.tif"
    tifffile.imwrite(path, images, photometric="minisblack")
    return path, images


def test_python_and_the_cli_write_byte_identical_masks_and_labels(stack, cli, tmp_path, tiny_model_dir):
    path, images = stack
    segmenter = Segmenter.from_pretrained(str(tiny_model_dir), device="cpu", post=POST)
    result = segment_volume(segmenter, images)
    status, _, err = cli(
        "predict", "--model", tiny_model_dir, "--input", path, "--out", tmp_path / "mask.tif",
        "--labels-out", tmp_path / "labels.tif", "--min-size", "20", "--device", "cpu",
    )  # fmt: skip
    assert status == 0, err
    mask, labels = tifffile.imread(tmp_path / "mask.tif"), tifffile.imread(tmp_path / "labels.tif")
    assert result.mask.dtype == mask.dtype == np.uint8 and result.mask.tobytes() == mask.tobytes()
    assert result.labels.dtype == labels.dtype == np.uint32 and result.labels.tobytes() == labels.tobytes()
    assert result.mask.any() and result.summary.instances == labels.max() >= 1


def test_a_path_or_an_array_in_memory_give_the_same_segmentation(stack):
    path, images = stack
    segmenter = Segmenter.from_pretrained(TINY_BASE, device="cpu")
    from_path = segment_volume(segmenter, path, post=POST, probabilities=True)
    from_array = segment_volume(segmenter, images, post=POST, probabilities=True)
    np.testing.assert_array_equal(from_path.mask, from_array.mask)
    np.testing.assert_array_equal(from_path.probabilities, from_array.probabilities)
    assert from_path.probabilities.dtype == np.float32 and from_path.probabilities.shape == images.shape


def test_segment_on_one_image_equals_the_cli_on_that_image(stack, cli, tmp_path, tiny_model_dir):
    _, images = stack
    tifffile.imwrite(tmp_path / "image.tif", images[1])
    mask = Segmenter.from_pretrained(str(tiny_model_dir)).segment(images[1])  # the CLI's defaults
    status, _, err = cli(
        "predict",
        "--model",
        tiny_model_dir,
        "--input",
        tmp_path / "image.tif",
        "--out",
        tmp_path / "m.tif",
    )
    assert status == 0, err
    assert (
        mask.shape == images[1].shape
        and mask.any()
        and mask.tobytes() == tifffile.imread(tmp_path / "m.tif").tobytes()
    )


def test_saved_settings_come_back_with_from_pretrained_and_arguments_override_them(tmp_path):
    post = PostProcessing(threshold=0.6, z_window=3, fill_holes=False, min_size=7)
    saved = Segmenter.from_pretrained(TINY_BASE, mode="grid", halo=16, overlap=8, post=post)
    saved.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / INFERENCE_CONFIG).read_text())["postprocessing"]["min_size"] == 7
    loaded = Segmenter.from_pretrained(str(tmp_path / "model"))
    assert (loaded.mode, loaded.halo, loaded.overlap, loaded.post) == ("grid", 16, 8, post)
    assert Segmenter.from_pretrained(str(tmp_path / "model"), halo=0).halo == 0


def test_push_to_hub_uploads_the_saved_folder_through_the_allow_list(tmp_path):
    with (
        mock.patch("huggingface_hub.HfApi.create_commit") as commit,
        mock.patch("huggingface_hub.HfApi.create_repo"),
    ):
        Segmenter.from_pretrained(TINY_BASE).push_to_hub("me/mito-segmenter", token="hf_secret")
    names = {op.path_in_repo for op in commit.call_args.kwargs["operations"]}
    assert names == {"config.json", "model.safetensors", "processor_config.json", INFERENCE_CONFIG}


def test_a_summary_is_typed_and_keeps_the_json_keys():
    summary = PredictionSummary(shape=(2, 8, 8), encoder_passes=4, instances=3, instance_sizes={"p0": 1.0})
    assert summary.to_dict() == {
        "shape": [2, 8, 8], "encoder_passes": 4, "slices_predicted": 0, "slices_skipped": 0, "halo_slices": 0,
        "postprocessing": {}, "instances": 3, "instance_sizes": {"p0": 1.0}, "process": 0, "processes": 1,
        "warnings": [],
    }  # fmt: skip
