"""The Segment mitochondria widget: the same labels and probabilities as sam-mito predict, cancellable,
and bad settings told as the command line tells them."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from napari.utils.notifications import ErrorNotification, notification_manager

from sam_mito.defaults import TINY_BASE
from sam_mito.napari.segment_widget import SegmentWidget

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "sam-mito"
#: Set to write the documentation's screenshot (docs/napari_segmentation.png) from a real viewer.
SCREENSHOT_ENV = "SAM_MITO_DOCS_SCREENSHOTS"
WAIT_MS = 120_000


@pytest.fixture
def notifications():
    """The notifications napari shows during the test, in order."""
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


def _widget(viewer) -> SegmentWidget:
    """The widget as napari's Plugins menu docks it (through the manifest)."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment mitochondria")
    assert isinstance(widget, SegmentWidget)
    return widget


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def _cli(predict, tmp_path, data, *flags):
    """``sam-mito predict`` on ``data`` written as a TIFF: its labels and probabilities."""
    source = tmp_path / "layer.tif"
    tifffile.imwrite(source, data, photometric="minisblack")
    outputs = [tmp_path / name for name in ("mask.tif", "labels.tif", "probabilities.tif")]
    status, error = predict(
        "--model", TINY_BASE, "--input", source, "--out", outputs[0], "--labels-out", outputs[1],
        "--probabilities-out", outputs[2], "--overwrite", *flags,
    )  # fmt: skip
    assert status == 0, error
    return tifffile.imread(outputs[1]), tifffile.imread(outputs[2])


@pytest.mark.parametrize("kind", ["stack", "image"])
def test_the_widget_adds_the_labels_and_probabilities_sam_mito_predict_writes(
    kind, make_napari_viewer, qtbot, em_stack, predict, tmp_path, notifications
):
    data = em_stack if kind == "stack" else em_stack[1]
    viewer = make_napari_viewer()
    viewer.add_image(data, name="em", scale=(2.0,) * data.ndim)
    widget = _widget(viewer)
    assert widget.model.text() == TINY_BASE and widget.image.currentText() == "em"
    widget.probabilities.setChecked(True)
    widget.min_size.setValue(0)  # keep every object, so that there are instances to compare
    assert widget.run() is not None
    _wait(qtbot, widget)
    labels, probabilities = viewer.layers["em instances"], viewer.layers["em probabilities"]
    assert type(labels).__name__ == "Labels" and labels.data.dtype == np.uint32
    assert labels.data.max() > 0 and tuple(labels.scale) == (2.0,) * data.ndim
    assert viewer.layers.index(labels) == len(viewer.layers) - 1  # on top
    cli_labels, cli_probabilities = _cli(predict, tmp_path, data, "--min-size", "0")
    np.testing.assert_array_equal(labels.data, cli_labels)
    np.testing.assert_array_equal(probabilities.data, cli_probabilities)
    assert labels.metadata["sam_mito"]["instances"] == int(cli_labels.max())
    assert widget.progress_bar.value() == widget.progress_bar.maximum() == (3 if kind == "stack" else 1)
    assert not [n for n in notifications if isinstance(n, ErrorNotification)]


def test_boxes_drawn_per_slice_prompt_as_a_boxes_json_does(
    make_napari_viewer, qtbot, em_stack, predict, tmp_path
):
    viewer = make_napari_viewer()
    viewer.add_image(em_stack, name="em")
    rectangles = [
        np.array([[1, 20, 30], [1, 20, 150], [1, 100, 150], [1, 100, 30]]),
        np.array([[2, 140.4, 60.6], [2, 140.4, 200], [2, 230, 200], [2, 230, 60.6]]),
    ]
    viewer.add_shapes(rectangles, shape_type="rectangle", name="boxes")
    widget = _widget(viewer)
    widget.set_mode("boxes")
    assert widget.shapes.currentText() == "boxes" and widget.shapes.isEnabled()
    widget.z_window.setValue(1)
    widget.min_size.setValue(0)
    widget.run()
    _wait(qtbot, widget)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"1": [[30, 20, 150, 100]], "2": [[61, 141, 200, 230]]}))
    cli_labels, _ = _cli(predict, tmp_path, em_stack, "--boxes", boxes, "--z-window", "1", "--min-size", "0")
    labels = viewer.layers["em instances"].data
    np.testing.assert_array_equal(labels, cli_labels)
    assert not labels[0].any()  # no box on slice 0: nothing there


@pytest.mark.parametrize("how", ["button", "napari"])
def test_a_run_cancelled_stops_at_the_next_tile_and_adds_nothing(
    how, make_napari_viewer, qtbot, notifications
):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (6, 512, 512), dtype=np.uint8), name="em")
    widget = _widget(viewer)
    worker = widget.run()
    cancel = widget.run_or_cancel if how == "button" else worker.quit  # napari's task cancel calls quit
    worker.yielded.connect(lambda step: cancel() if step[0] == 1 else None)
    _wait(qtbot, widget)
    widget.job.thread.join(timeout=60)
    assert not widget.job.thread.is_alive()  # the prediction stopped too, not just the worker
    assert [layer.name for layer in viewer.layers] == ["em"]
    assert widget.result is None and widget.status.text() == "cancelled"
    assert widget.progress_bar.value() < 24
    assert widget.run_button.text() == "Segment"
    assert not [n for n in notifications if isinstance(n, ErrorNotification)]


def test_a_tile_the_model_cannot_take_is_told_as_the_cli_tells_it(
    make_napari_viewer, qtbot, em_stack, predict, tmp_path, notifications
):
    viewer = make_napari_viewer()
    viewer.add_image(em_stack, name="em")
    widget = _widget(viewer)
    widget.tile.setValue(999)
    widget.run()
    _wait(qtbot, widget)
    tifffile.imwrite(tmp_path / "em.tif", em_stack, photometric="minisblack")
    status, cli_message = predict("--model", TINY_BASE, "--input", tmp_path / "em.tif", "--out",
                                  tmp_path / "mask.tif", "--tile", "999")  # fmt: skip
    assert status == 2 and "--tile 999" in cli_message
    assert [n.message for n in notifications] == [cli_message]
    assert not isinstance(notifications[0], ErrorNotification)  # a message, no traceback to show
    assert [layer.name for layer in viewer.layers] == ["em"]


def test_settings_refused_before_anything_runs(make_napari_viewer, em_stack, notifications):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    assert widget.run() is None  # no image layer yet
    viewer.add_image(em_stack, name="em")
    widget.model.setText("  ")
    assert widget.run() is None
    widget.model.setText(TINY_BASE)
    widget.set_mode("boxes")
    assert widget.run() is None  # no shapes layer to take the boxes from
    ellipse = np.array([[0, 10, 10], [0, 10, 40], [0, 30, 40], [0, 30, 10]])
    viewer.add_shapes([ellipse], shape_type="ellipse", name="drawn")
    widget.shapes.setCurrentIndex(widget.shapes.findText("drawn"))
    assert widget.run() is None
    messages = [n.message for n in notifications]
    assert messages == [
        "no image layer to segment: open or add an image (a 2D image or a 3D stack)",
        "model: empty; give a Hub id, a local model folder or sam-mito/tiny-base (--model)",
        "mode 'boxes' needs boxes: add a shapes layer and draw rectangles on the slices to segment",
        "shapes layer 'drawn': shape 0 is of type 'ellipse'; draw the boxes as rectangles",
    ]
    assert not [n for n in notifications if isinstance(n, ErrorNotification)]
    assert widget.worker is None


def test_the_docs_screenshot_shows_a_segmentation_in_a_real_viewer(make_napari_viewer, qtbot, tmp_path):
    """The screenshot in docs/napari.md, from this viewer; written there when SAM_MITO_DOCS_SCREENSHOTS is set."""
    from sam_mito.data.synthetic import SyntheticEM

    scene = SyntheticEM((8, 384, 512), seed=11)
    stack = np.stack([scene.render(z)[0] for z in range(len(scene))])
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    viewer.add_image(stack, name="em")
    widget = _widget(viewer)
    widget.run()
    _wait(qtbot, widget)
    viewer.dims.set_point(0, 4)
    qtbot.wait(200)
    picture = viewer.screenshot(canvas_only=False, flash=False)
    assert picture.shape[0] > 500 and picture[..., :3].std() > 10  # not a black or blank window
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    assert canvas[..., :3].max() > 100  # the canvas drew the image (a hidden one comes out black)
    out = (
        ROOT / "docs" / "napari_segmentation.png" if os.environ.get(SCREENSHOT_ENV) else tmp_path / "shot.png"
    )
    from PIL import Image

    Image.fromarray(picture).save(out)
    assert out.stat().st_size > 10_000
