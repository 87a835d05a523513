"""The "Measure" widget: one row per object of a labels layer, linked to the viewer.

Choose a labels layer (instance labels: what *Segment mitochondria* adds, or ``sam-mito predict
--labels-out`` opened with this plugin) and, for ``mean_intensity``, an image layer of the same
shape, then press *Measure*: :func:`sam_mito.measurement.objects.measure` (``sam_mito.measure``,
what ``sam-mito measure`` runs) fills the table (its columns: ``label``, ``voxels``, volume or
area, surface or perimeter, shape, bounding box, centroid, border contact). The voxel size, in
nanometres, is the layer's scale when that is not all ones (edit it before measuring; empty: sizes
in voxels). Selecting a row selects that label in the layer (``layer.selected_label``), moves the
slider to the object's middle slice and centres the camera on its centroid. *Save CSV…* writes the
table as it is measured.

The plugin needs the ``napari`` extra: ``pip install "sam-mito[napari]"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sam_mito.errors import SamMitoError
from sam_mito.napari.layer_choices import fill_layer_choices

if TYPE_CHECKING:
    import napari
    import pandas as pd

NO_IMAGE = "none"


class _Cell(QTableWidgetItem):
    """A table cell that sorts by its number, not its text."""

    def __init__(self, value) -> None:
        if isinstance(value, bool | np.bool_):
            text, self.number = ("yes" if value else "no"), float(value)
        elif isinstance(value, int | np.integer):
            text, self.number = str(int(value)), float(value)
        else:
            number = float(value)
            text, self.number = (f"{number:.4g}" if np.isfinite(number) else "—"), number
        super().__init__(text)
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other) -> bool:
        if isinstance(other, _Cell):
            return self.number < other.number
        return super().__lt__(other)


class MeasureWidget(QWidget):
    """Measure the objects of a labels layer and browse them.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose labels layers it measures and whose camera it moves.

    Attributes
    ----------
    table : pandas.DataFrame or None
        The last measurement, one row per object.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.table: pd.DataFrame | None = None
        self.measured: Labels | None = None

        self.labels = QComboBox()
        self.labels.setToolTip("the instance labels to measure (0 = background)")
        self.image = QComboBox()
        self.image.setToolTip("an image of the labels' shape, for each object's mean intensity")
        self.voxel_size = QLineEdit()
        self.voxel_size.setPlaceholderText("voxels (or z, y, x in nm)")
        self.voxel_size.setToolTip("voxel size in nanometres: one number, or z, y, x (y, x for an image)")
        self.measure_button = QPushButton("Measure")
        self.measure_button.clicked.connect(self.measure)
        self.save_button = QPushButton("Save CSV…")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._choose_csv)
        self.view = QTableWidget()
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setSortingEnabled(True)
        self.view.itemSelectionChanged.connect(self._row_selected)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("labels", self.labels)
        form.addRow("image", self.image)
        form.addRow("voxel size", self.voxel_size)
        buttons = QHBoxLayout()
        buttons.addWidget(self.measure_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.view)
        layout.addWidget(self.status)

        self.labels.currentIndexChanged.connect(self._labels_changed)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.reset_choices)
        self.reset_choices()

    def reset_choices(self, event=None) -> None:
        """Fill the layer choices from the viewer, keeping the current ones."""
        fill_layer_choices(self.labels, self.viewer.layers, Labels)
        fill_layer_choices(self.image, self.viewer.layers, Image, none_item=NO_IMAGE)
        self._labels_changed()

    def _labels_changed(self, *_) -> None:
        layer = self.labels.currentData()
        if layer is None:
            return
        scale = [float(s) for s in layer.scale]
        self.voxel_size.setText("" if all(s == 1 for s in scale) else ", ".join(f"{s:g}" for s in scale))

    def _voxel_size(self) -> tuple[float, ...] | None:
        text = self.voxel_size.text().strip()
        if not text:
            return None
        try:
            values = tuple(float(part) for part in text.replace(",", " ").split())
        except ValueError as err:
            raise SamMitoError(
                f"voxel size '{text}': expected one number or z, y, x in nanometres (empty: voxels)"
            ) from err
        return values[0] if len(values) == 1 else values

    def measure(self) -> pd.DataFrame | None:
        """Measure the chosen labels layer and show the table (None if refused; a notification says why)."""
        from sam_mito.measurement.objects import measure

        layer = self.labels.currentData()
        try:
            if layer is None:
                raise SamMitoError("no labels layer to measure: segment an image or open instance labels")
            image = self.image.currentData()
            table = measure(
                _pixels(layer), voxel_size=self._voxel_size(), image=None if image is None else _pixels(image)
            )
        except SamMitoError as err:
            self.status.setText(f"error: {err}")
            show_error(str(err))
            return None
        self.table, self.measured = table, layer
        self._fill(table)
        self.save_button.setEnabled(True)
        message = f"{layer.name}: {len(table)} objects measured"
        self.status.setText(message)
        show_info(message)
        for warning in table.attrs.get("measurement", {}).get("warnings", []):
            show_warning(warning)
        return table

    def _fill(self, table: pd.DataFrame) -> None:
        self.view.setSortingEnabled(False)
        self.view.clear()
        self.view.setColumnCount(len(table.columns))
        self.view.setRowCount(len(table))
        self.view.setHorizontalHeaderLabels([str(c) for c in table.columns])
        for row, values in enumerate(table.itertuples(index=False)):
            for column, value in enumerate(values):
                self.view.setItem(row, column, _Cell(value))
        self.view.resizeColumnsToContents()
        self.view.setSortingEnabled(True)

    def _row_selected(self) -> None:
        rows = {index.row() for index in self.view.selectedIndexes()}
        if len(rows) == 1 and self.table is not None:
            self.select_label(int(self.view.item(rows.pop(), 0).number))

    def select_label(self, label: int) -> None:
        """Select ``label`` in the measured layer, move the sliders to its centroid and centre the camera there."""
        if self.table is None or self.measured is None:
            return
        rows = self.table.index[self.table["label"] == label]
        if not len(rows):
            return
        row = self.table.loc[rows[0]]
        layer = self.measured
        layer.selected_label = int(label)
        centroid = [row["centroid_z"], row["centroid_y"], row["centroid_x"]][-layer.ndim :]
        world = np.asarray(layer.data_to_world(centroid), dtype=float)
        dims = self.viewer.dims
        offset = dims.ndim - len(world)  # the layer's axes are the viewer's last ones
        for axis in range(dims.ndim):
            if axis >= offset and axis not in dims.displayed:
                dims.set_point(axis, world[axis - offset])
        self.viewer.camera.center = tuple(world[axis - offset] for axis in dims.displayed if axis >= offset)

    def _choose_csv(self) -> None:
        name = self.measured.name if self.measured is not None else "objects"
        path, _ = QFileDialog.getSaveFileName(self, "Save the table", f"{name}.csv", "CSV (*.csv)")
        if path:
            self.save_csv(path)

    def save_csv(self, path: str | Path) -> Path:
        """Write the table measured last to ``path`` as CSV (one row per object, with a header)."""
        if self.table is None:
            raise SamMitoError("nothing measured yet: press Measure first")
        path = Path(path)
        self.table.to_csv(path, index=False)
        self.status.setText(f"saved {len(self.table)} rows to {path}")
        return path


def _pixels(layer):
    """A layer's full-resolution pixels for :func:`measure`: the array in memory, or the file it was
    read from lazily (measured slab by slab)."""
    data = layer.data[0] if layer.multiscale else layer.data
    if isinstance(data, np.ndarray):
        return data
    source = layer.metadata.get("source") if isinstance(layer.metadata, dict) else None
    return source if source is not None and Path(source).exists() else np.asarray(data)
