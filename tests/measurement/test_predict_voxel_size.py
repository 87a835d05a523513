"""predict --voxel-size writes the NGFF scale and unit into its zarr outputs, and measure reads it back."""

import numpy as np
import pytest
import tifffile

from sam_mito.defaults import TINY_BASE
from sam_mito.errors import SamMitoError
from sam_mito.inference import volume_prediction as predicting
from sam_mito.inference.postprocessing import PostProcessing
from sam_mito.measurement.objects import measure
from sam_mito.volumes.omezarr import read_voxel_size
from sam_mito.volumes.reading import open_volume
from tests._scripted import ScriptedSegmenter, index_stack

POST = PostProcessing(z_window=1, fill_holes=False, min_size=0)


def _maps(depth=3, height=32, width=40) -> np.ndarray:
    """A disk in every slice and a smaller one in the first two: two 3D objects."""
    y, x = np.indices((height, width))
    maps = np.full((depth, height, width), 0.1, np.float32)
    maps[:, (y - 16) ** 2 + (x - 12) ** 2 <= 36] = 0.9
    maps[:2, (y - 10) ** 2 + (x - 30) ** 2 <= 9] = 0.9
    return maps


@pytest.fixture
def stack(tmp_path):
    maps = _maps()
    tifffile.imwrite(tmp_path / "stack.tif", index_stack(*maps.shape), photometric="minisblack")
    return maps, tmp_path / "stack.tif"


def _scale_and_units(path):
    multiscale = open_volume(path).attrs["multiscales"][0]
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    return scale, [axis.get("unit") for axis in multiscale["axes"]]


def test_every_zarr_output_states_the_voxel_size_and_measure_reads_it(stack, tmp_path):
    maps, path = stack
    outputs = {"labels_path": tmp_path / "labels.zarr", "probabilities_path": tmp_path / "p.zarr"}
    predicting.predict_volume(
        ScriptedSegmenter(maps), path, tmp_path / "mask.zarr", post=POST, voxel_size=(5, 4, 4), **outputs
    )
    for name in ("mask.zarr", "labels.zarr", "p.zarr"):
        assert _scale_and_units(tmp_path / name) == ([5.0, 4.0, 4.0], ["nanometer"] * 3), name
        assert read_voxel_size(tmp_path / name) == (5.0, 4.0, 4.0)
    labels = open_volume(tmp_path / "labels.zarr")
    assert "image-label" in labels.attrs and labels.attrs["multiscales"][0]["name"] == "labels"
    assert open_volume(tmp_path / "mask.zarr").attrs["sam_mito"]["complete"]  # the run record is kept
    table = measure(tmp_path / "labels.zarr")
    assert table.attrs["measurement"]["voxel_size_from"] == "labels metadata"
    assert len(table) == 2 and (table["volume_nm3"] == table["voxels"] * 80).all()


def test_without_a_voxel_size_the_scale_is_1_and_no_unit(stack, tmp_path):
    maps, path = stack
    predicting.predict_volume(
        ScriptedSegmenter(maps), path, tmp_path / "mask.zarr", labels_path=tmp_path / "labels.zarr", post=POST
    )
    for name in ("mask.zarr", "labels.zarr"):
        assert _scale_and_units(tmp_path / name) == ([1.0, 1.0, 1.0], [None] * 3)
        assert read_voxel_size(tmp_path / name) is None
    assert "volume_nm3" not in measure(tmp_path / "labels.zarr")


def test_a_tiff_prediction_with_zarr_labels_states_it_on_the_labels(stack, tmp_path):
    maps, path = stack
    predicting.predict_volume(
        ScriptedSegmenter(maps),
        path,
        tmp_path / "mask.tif",
        labels_path=tmp_path / "labels.zarr",
        post=POST,
        voxel_size=(40, 5, 5),
    )
    assert read_voxel_size(tmp_path / "labels.zarr") == (40.0, 5.0, 5.0)


@pytest.mark.parametrize("voxel_size", [(0, 5, 5), (5, 5), (5, float("nan"), 5)])
def test_a_bad_voxel_size_is_refused_before_any_output(stack, tmp_path, voxel_size):
    maps, path = stack
    segmenter = ScriptedSegmenter(maps)
    with pytest.raises(SamMitoError, match="voxel_size"):
        predicting.predict_volume(segmenter, path, tmp_path / "mask.zarr", post=POST, voxel_size=voxel_size)
    assert segmenter.calls == [] and not (tmp_path / "mask.zarr").exists()


def test_predict_voxel_size_flag_then_measure_from_the_cli(cli, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", images, photometric="minisblack")
    mask, labels = tmp_path / "mask.zarr", tmp_path / "labels.zarr"
    status, _, err = cli(
        "predict", "--model", TINY_BASE, "--input", tmp_path / "stack.tif", "--tile", "64",
        "--out", mask, "--labels-out", labels, "--voxel-size", "5", "5", "5", "--min-size", "0",
    )  # fmt: skip
    assert status == 0, err
    assert read_voxel_size(mask) == read_voxel_size(labels) == (5.0, 5.0, 5.0)
    status, printed, err = cli("measure", "--labels", labels, "--out", tmp_path / "objects.csv")
    assert status == 0, err
    assert "voxel size 5 x 5 x 5 nm" in printed
    status, _, err = cli("predict", "--model", TINY_BASE, "--input", tmp_path / "stack.tif", "--out", tmp_path / "m.tif", "--voxel-size", "5", "-1", "5")  # fmt: skip
    assert status == 2 and "--voxel-size" in err and "expected a number > 0" in err
