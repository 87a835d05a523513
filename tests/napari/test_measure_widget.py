"""The Measure widget: a row per object, a row selected selects and centres its object, the table saves as CSV."""

import numpy as np
import pandas as pd
import pytest
from napari.utils.notifications import notification_manager

from sam_mito.napari.measure_widget import MeasureWidget

PLUGIN = "sam-mito"


@pytest.fixture
def labels():
    """Three boxes in a (12, 64, 80) stack: label 2 spans slices 6..9, rows 10..29, columns 50..69."""
    volume = np.zeros((12, 64, 80), np.uint32)
    volume[1:4, 5:15, 5:15] = 1
    volume[6:10, 10:30, 50:70] = 2
    volume[2:11, 40:60, 20:30] = 7
    return volume


def _widget(viewer) -> MeasureWidget:
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure")
    assert isinstance(widget, MeasureWidget)
    return widget


def test_the_table_has_a_row_per_object_and_a_selected_row_centres_it(make_napari_viewer, labels, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(labels.astype(np.float32) * 10, name="em", scale=(40, 5, 5))
    layer = viewer.add_labels(labels, name="cells", scale=(40, 5, 5))
    widget = _widget(viewer)
    assert widget.labels.currentText() == "cells" and widget.voxel_size.text() == "40, 5, 5"
    widget.image.setCurrentIndex(widget.image.findText("em"))
    table = widget.measure()
    assert table["label"].tolist() == [1, 2, 7] and table["voxels"].tolist() == [300, 1600, 1800]
    assert table["volume_nm3"].tolist() == [300 * 1000.0, 1600 * 1000.0, 1800 * 1000.0]
    assert table["mean_intensity"].tolist() == [10.0, 20.0, 70.0]
    assert widget.view.rowCount() == 3 and widget.view.horizontalHeaderItem(0).text() == "label"
    assert [widget.view.item(row, 0).text() for row in range(3)] == ["1", "2", "7"]

    widget.view.selectRow(1)  # label 2: centroid (7.5, 19.5, 59.5) voxels
    assert layer.selected_label == 2
    assert viewer.dims.point[0] == pytest.approx(7 * 40, abs=40)  # the slider on its slice (7 or 8)
    assert viewer.dims.current_step[0] in (7, 8)
    assert tuple(viewer.camera.center[-2:]) == pytest.approx((19.5 * 5, 59.5 * 5))

    widget.view.sortItems(1)  # by voxels, ascending: the rows move, the selection follows the label
    widget.view.selectRow(2)
    assert layer.selected_label == 7 and viewer.dims.current_step[0] == 6

    saved = pd.read_csv(widget.save_csv(tmp_path / "objects.csv"))
    assert saved.columns.tolist() == table.columns.tolist() and saved["label"].tolist() == [1, 2, 7]


def test_a_2d_labels_layer_is_measured_in_pixels_and_centred(make_napari_viewer):
    viewer = make_napari_viewer()
    image = np.zeros((50, 60), np.int32)
    image[10:20, 30:50] = 4
    layer = viewer.add_labels(image, name="slice")
    widget = _widget(viewer)
    assert widget.voxel_size.text() == ""
    table = widget.measure()
    assert table["label"].tolist() == [4] and table["pixels"].tolist() == [200]
    widget.view.selectRow(0)
    assert layer.selected_label == 4 and tuple(viewer.camera.center[-2:]) == pytest.approx((14.5, 39.5))


def test_bad_input_is_a_notification_not_a_traceback(make_napari_viewer):
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        viewer = make_napari_viewer()
        widget = _widget(viewer)
        assert widget.measure() is None  # no labels layer
        viewer.add_labels(np.ones((4, 8, 8), np.uint8), name="mask")
        widget.voxel_size.setText("five")
        assert widget.measure() is None
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert [n.message for n in seen] == [
        "no labels layer to measure: segment an image or open instance labels",
        "voxel size 'five': expected one number or z, y, x in nanometres (empty: voxels)",
    ]
