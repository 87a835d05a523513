"""The reader opens sam-mito's outputs as the right layers, leaves other folders alone, and writes nothing."""

import json
import shutil

import numpy as np
import tifffile
import zarr

from sam_mito.napari.reader import get_reader

PLUGIN = "sam-mito"


def _files(root):
    """Every file under ``root`` with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _only(layers):
    (layer,) = layers
    return layer


def test_a_zarr_mask_opens_as_a_labels_layer_named_from_the_folder(outputs):
    data, kwargs, kind = _only(get_reader(str(outputs / "test-mask.zarr"))(str(outputs / "test-mask.zarr")))
    assert kind == "labels" and kwargs["name"] == "test-mask" and kwargs["visible"]
    assert data.shape == (3, 256, 256) and data.dtype == np.uint8
    assert set(np.unique(np.asarray(data))) <= {0, 255}
    assert kwargs["scale"] == [1.0, 1.0, 1.0]
    assert kwargs["metadata"]["sam_mito"]["complete"] is True  # the run record


def test_zarr_labels_open_as_labels_and_probabilities_as_an_image_from_0_to_1(outputs):
    data, kwargs, kind = _only(
        get_reader(str(outputs / "test-labels.zarr"))(str(outputs / "test-labels.zarr"))
    )
    assert (kind, kwargs["name"], data.dtype) == ("labels", "test-labels", np.uint32)
    path = str(outputs / "test-probabilities.zarr")
    data, kwargs, kind = _only(get_reader(path)(path))
    assert (kind, kwargs["name"], data.dtype) == ("image", "test-probabilities", np.float32)
    assert kwargs["colormap"] == "magma" and kwargs["contrast_limits"] == [0.0, 1.0]


def test_tiff_outputs_and_the_input_open_as_the_same_kinds(outputs):
    kinds = {}
    for name in ("test-mask", "test-labels", "test-probabilities", "testing"):
        path = str(outputs / f"{name}.tif")
        data, kwargs, kind = _only(get_reader(path)(path))
        assert kwargs["name"] == name and data.shape == (3, 256, 256)
        kinds[name] = (kind, kwargs.get("colormap"))
    assert kinds == {
        "test-mask": ("labels", None),
        "test-labels": ("labels", None),
        "test-probabilities": ("image", "magma"),
        "testing": ("image", "gray"),
    }


def test_the_ngff_scale_and_translation_place_the_layer(outputs, tmp_path):
    copy = shutil.copytree(outputs / "test-labels.zarr", tmp_path / "scaled.zarr")
    attrs = json.loads((copy / ".zattrs").read_text())
    attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [40.0, 5.0, 5.0]},
        {"type": "translation", "translation": [0.0, 100.0, 200.0]},
    ]
    (copy / ".zattrs").write_text(json.dumps(attrs))
    _, kwargs, _ = _only(get_reader(str(copy))(str(copy)))
    assert kwargs["scale"] == [40.0, 5.0, 5.0] and kwargs["translate"] == [0.0, 100.0, 200.0]


def test_folders_that_are_not_sam_mito_outputs_are_left_to_other_readers(tmp_path, outputs):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not an image")
    foreign = tmp_path / "foreign.zarr"  # an OME-Zarr image sam-mito did not write
    group = zarr.open_group(str(foreign), mode="w", zarr_format=2)
    group.attrs["multiscales"] = [{"version": "0.4", "axes": ["y", "x"], "datasets": [{"path": "0"}]}]
    group.create_array("0", shape=(8, 8), dtype=np.uint8)
    array_only = tmp_path / "array.zarr"
    zarr.open_array(str(array_only), mode="w", shape=(2, 8, 8), dtype=np.uint8, zarr_format=2)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    for path in (plain, foreign, array_only, rgb, tmp_path / "missing.zarr", plain / "notes.txt"):
        assert get_reader(str(path)) is None, path
    assert get_reader([str(outputs / "test-mask.zarr"), str(plain)]) is None


def test_opening_every_output_in_a_viewer_writes_nothing_anywhere(outputs, make_napari_viewer):
    root = outputs.parent  # the outputs' folder and the one above it: nothing new, nothing changed
    before = _files(root)
    viewer = make_napari_viewer()
    paths = [str(outputs / name) for name in
             ("test-mask.zarr", "test-labels.zarr", "test-probabilities.zarr", "test-labels.tif")]  # fmt: skip
    for path in paths:
        viewer.open(path, plugin=PLUGIN)
    kinds = [(layer.name, type(layer).__name__, layer.visible) for layer in viewer.layers]
    assert kinds == [
        ("test-mask", "Labels", True),
        ("test-labels", "Labels", True),
        ("test-probabilities", "Image", True),
        ("test-labels [1]", "Labels", True),
    ]
    viewer.dims.set_point(0, 2)  # read another slice of each store
    np.asarray(viewer.layers["test-labels"].data[2])
    assert _files(root) == before
