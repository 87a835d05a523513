"""The measurement figure (Pillow): histograms of the objects' sizes and of their shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

PANEL = (460, 320)
MARGIN = (64, 40, 40, 56)  # left, top, right, bottom of each panel's plot area
BINS = 24
BAR_COLOUR = (0, 160, 255)
AXIS_COLOUR = (60, 60, 60)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _label(value: float) -> str:
    return f"{value:.3g}"


def histogram_panel(
    values: np.ndarray, title: str, *, log: bool = False, upper: float | None = None
) -> Image.Image:
    """One histogram of ``values`` with its axes, ticks and title, ``PANEL`` pixels.

    ``log`` bins ``log10(values)`` (the ticks show the values); ``upper`` caps the range, values
    above it counted in the last bin.
    """
    panel = Image.new("RGB", PANEL, "white")
    draw = ImageDraw.Draw(panel)
    font, small = _font(16), _font(12)
    left, top, right, bottom = MARGIN
    width, height = PANEL[0] - left - right, PANEL[1] - top - bottom
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values) & ((values > 0) if log else True)]
    draw.text((left, 8), f"{title} (n = {values.size})", fill="black", font=font)
    draw.line([(left, top), (left, top + height), (left + width, top + height)], fill=AXIS_COLOUR, width=1)
    if values.size == 0:
        draw.text((left + width // 3, top + height // 2), "no objects", fill="black", font=font)
        return panel
    data = np.log10(values) if log else values
    low, high = float(data.min()), float(data.max())
    if upper is not None:
        high = min(high, np.log10(upper) if log else upper)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(np.clip(data, low, high), bins=BINS, range=(low, high))
    peak = max(int(counts.max()), 1)
    bar = width / BINS
    for index, count in enumerate(counts):
        if count:
            x0 = left + index * bar
            y0 = min(top + height - count / peak * height, top + height - 2)  # at least a sliver
            draw.rectangle([x0 + 1, y0, x0 + bar - 1, top + height - 1], fill=BAR_COLOUR)
    for edge in (edges[0], (edges[0] + edges[-1]) / 2, edges[-1]):
        x = left + (edge - edges[0]) / (edges[-1] - edges[0]) * width
        draw.line([(x, top + height), (x, top + height + 4)], fill=AXIS_COLOUR)
        text = _label(10**edge if log else edge)
        draw.text(
            (x - draw.textlength(text, font=small) / 2, top + height + 6), text, fill="black", font=small
        )
    for count, y in ((peak, top), (0, top + height)):
        text = str(count)
        draw.text((left - 6 - draw.textlength(text, font=small), y - 7), text, fill="black", font=small)
    draw.text(
        (left, top + height + 24), "objects per bin" + (", log scale" if log else ""), fill="gray", font=small
    )
    return panel


def measurement_figure(table: pd.DataFrame, *, title: str | None = None) -> Image.Image:
    """Two histograms side by side: the objects' volumes (areas) and sphericities (circularities).

    Volumes are in um^3 where the table has them, else voxels, on a log scale when they span more
    than two decades; sphericity beyond 1.5 (objects of a few voxels) falls in the last bin.
    """
    flat = "pixels" in table.columns
    if flat:
        size_column = "area_um2" if "area_um2" in table.columns else "pixels"
        size_title = "area (um^2)" if size_column == "area_um2" else "area (pixels)"
        shape_column, shape_title = "circularity", "circularity"
    else:
        size_column = "volume_um3" if "volume_um3" in table.columns else "voxels"
        size_title = "volume (um^3)" if size_column == "volume_um3" else "volume (voxels)"
        shape_column, shape_title = "sphericity", "sphericity"
    sizes = table[size_column].to_numpy(np.float64)
    positive = sizes[sizes > 0]
    log = positive.size > 1 and positive.max() / positive.min() > 100
    panels = [
        histogram_panel(sizes, size_title, log=log),
        histogram_panel(table[shape_column].to_numpy(np.float64), shape_title, upper=1.5),
    ]
    header = 30 if title else 0
    figure = Image.new("RGB", (PANEL[0] * len(panels), PANEL[1] + header), "white")
    if title:
        ImageDraw.Draw(figure).text((10, 6), title, fill="black", font=_font(16))
    for index, panel in enumerate(panels):
        figure.paste(panel, (index * PANEL[0], header))
    return figure
