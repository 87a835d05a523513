"""The widgets' layer pickers: a combo box of the viewer's layers of one kind.

The plugin needs the ``napari`` extra: ``pip install "sam-mito[napari]"``.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox


def fill_layer_choices(box: QComboBox, layers, kind: type, *, none_item: str | None = None) -> None:
    """Refill ``box`` with the ``kind`` layers among ``layers``, keeping the current choice if it remains.

    Parameters
    ----------
    box : QComboBox
        The picker; each item's data is its layer.
    layers : iterable of napari layers
        The viewer's layers, in order.
    kind : type
        The layer class offered (``Image``, ``Labels``, ``Shapes``).
    none_item : str, optional, keyword-only
        The text of a first item whose data is None (no layer), when choosing none is allowed.
    """
    current = box.currentData()
    box.blockSignals(True)
    box.clear()
    if none_item is not None:
        box.addItem(none_item, None)
    for layer in layers:
        if isinstance(layer, kind):
            box.addItem(layer.name, layer)
    if current is not None and (index := box.findData(current)) >= 0:
        box.setCurrentIndex(index)
    box.blockSignals(False)
