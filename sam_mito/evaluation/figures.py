"""The base-vs-fine-tuned comparison figure: rows of patches, columns image / truth / base / fine-tuned."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sam_mito.data.prompts import label_instances

PANEL = 256
CAPTION = 24
HEADER = 28
GAP = 6
TRUTH_COLOUR = (40, 200, 70)
MODEL_COLOURS = ((255, 140, 0), (0, 160, 255), (230, 60, 200))
BOX_COLOUR = (255, 230, 0)


def figure_size(rows: int, columns: int) -> tuple[int, int]:
    """Pixel ``(width, height)`` of a figure with ``rows`` patches and ``columns`` panels per row."""
    width = columns * PANEL + (columns + 1) * GAP
    height = HEADER + rows * (PANEL + CAPTION + GAP) + GAP
    return width, height


def overlay(
    image: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int], *, size: int | None = PANEL
) -> Image.Image:
    """A grayscale ``uint8`` image as RGB with ``mask`` tinted in ``colour`` and outlined.

    The result is resized to a ``size`` x ``size`` panel, or kept at full size with ``size=None``.
    """
    rgb = np.repeat(np.asarray(image, dtype=np.float32)[..., None], 3, axis=-1)
    if mask is not None:
        inside = np.asarray(mask, dtype=bool)
        rgb[inside] = 0.5 * rgb[inside] + 0.5 * np.array(colour, dtype=np.float32)
        edge = inside & ~_eroded(inside)
        rgb[edge] = colour
    panel = Image.fromarray(rgb.round().astype(np.uint8))
    if size is None or panel.size == (size, size):
        return panel
    return panel.resize((size, size), Image.NEAREST)


def _eroded(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=False)
    return padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def comparison_figure(
    images: list[np.ndarray],
    labels: list[np.ndarray],
    predictions: dict[str, list[np.ndarray]],
    *,
    boxes: list[list[list[float]]],
    scores: dict[str, list[float]],
    captions: list[str] | None = None,
) -> Image.Image:
    """Draw one row per patch: the image, its ground truth, then each model's prediction.

    Parameters
    ----------
    images, labels : list of numpy.ndarray
        ``uint8`` grayscale patches and their binary masks.
    predictions : dict of str to list of numpy.ndarray
        Binary masks per model name (column titles, left to right), one per patch.
    boxes : list
        Per patch, the box prompts ``[x0, y0, x1, y1]`` drawn on the prediction panels (may be empty
        for prompt-free modes).
    scores : dict of str to list of float
        Dice per model and patch, printed under each prediction panel.
    captions : list of str, optional
        Text under each image panel (e.g. where the patch comes from).
    """
    columns = ["image", "ground truth", *predictions]
    width, height = figure_size(len(images), len(columns))
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    font, small = _font(18), _font(14)
    for column, title in enumerate(columns):
        draw.text((GAP + column * (PANEL + GAP) + 4, 4), title, fill="black", font=font)
    for row, (image, label) in enumerate(zip(images, labels, strict=True)):
        top = HEADER + row * (PANEL + CAPTION + GAP)
        scale = PANEL / max(np.shape(image))
        panels = [(overlay(image, None, TRUTH_COLOUR), captions[row] if captions else "")]
        objects = int(label_instances(np.asarray(label, dtype=bool)).max())
        panels.append((overlay(image, label, TRUTH_COLOUR), f"{objects} object(s)"))
        for index, (name, masks) in enumerate(predictions.items()):
            panel = overlay(image, masks[row], MODEL_COLOURS[index % len(MODEL_COLOURS)])
            pen = ImageDraw.Draw(panel)
            for x0, y0, x1, y1 in boxes[row]:
                pen.rectangle([x0 * scale, y0 * scale, x1 * scale, y1 * scale], outline=BOX_COLOUR, width=2)
            panels.append((panel, f"Dice {scores[name][row]:.3f}"))
        for column, (panel, caption) in enumerate(panels):
            left = GAP + column * (PANEL + GAP)
            figure.paste(panel, (left, top))
            draw.text((left + 4, top + PANEL + 3), caption, fill="black", font=small)
    return figure
