"""Box prompts derived from binary masks, and the training-time jitter applied to them.

Boxes are ``[x0, y0, x1, y1]`` in pixel coordinates of the patch, inclusive of the first and last
foreground pixel (``x1 = max column``), which is what SAM's processor expects.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from sam_mito.defaults import GRID_SIZE
from sam_mito.errors import SamMitoError

#: Face (4-)connectivity: objects touching only at a corner are separate instances.
CONNECTIVITY = ndimage.generate_binary_structure(2, 1)

#: Every prompt mode, as reports describe it. ``union`` and ``instance`` read the answer's location
#: off the ground truth; ``tile`` and ``grid`` are prompt-free; ``boxes`` are the user's own boxes.
PROMPT_MODES = {
    "union": "union box (from ground truth)",
    "instance": "per-instance boxes (from ground truth)",
    "tile": "whole-tile box (prompt-free)",
    "grid": f"{GRID_SIZE}x{GRID_SIZE} point grid (prompt-free)",
    "boxes": "boxes given by the user",
}
GROUND_TRUTH_MODES = ("union", "instance")
#: The dataset column holding each box mode's prompts.
BOX_COLUMNS = {"union": "union_box", "instance": "instance_boxes", "tile": "tile_box"}


def union_box(mask: np.ndarray) -> list[int]:
    """The smallest box containing every foreground pixel of ``mask``.

    Parameters
    ----------
    mask : numpy.ndarray
        Binary ``(H, W)`` mask.

    Returns
    -------
    list of int
        ``[x0, y0, x1, y1]``, inclusive.

    Raises
    ------
    ValueError
        If the mask has no foreground.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("union_box: mask has no foreground pixel")
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def tile_box(height: int, width: int) -> list[int]:
    """The box covering a whole ``height`` x ``width`` tile (the prompt-free prompt).

    Parameters
    ----------
    height, width : int
        The tile's size in pixels.

    Returns
    -------
    list of int
        ``[0, 0, width - 1, height - 1]``.
    """
    return [0, 0, width - 1, height - 1]


def grid_points(height: int, width: int, *, n: int = GRID_SIZE) -> list[list[float]]:
    """``n`` x ``n`` points ``[x, y]`` at the centres of an even grid over the image (a prompt-free prompt).

    Parameters
    ----------
    height, width : int
        The image's size in pixels.
    n : int, keyword-only
        Points per side.

    Returns
    -------
    list of [x, y]
        Row by row, top left first.
    """
    xs = (np.arange(n) + 0.5) * width / n
    ys = (np.arange(n) + 0.5) * height / n
    return [[float(x), float(y)] for y in ys for x in xs]


def label_instances(mask: np.ndarray) -> np.ndarray:
    """Label connected foreground components (4-connectivity) with ids 1..N, background 0.

    Parameters
    ----------
    mask : numpy.ndarray
        Binary ``(H, W)`` mask.

    Returns
    -------
    numpy.ndarray
        Integer labels of the same shape.
    """
    labels, _ = ndimage.label(mask, structure=CONNECTIVITY)
    return labels


def instance_boxes(mask: np.ndarray, *, min_pixels: int = 1) -> tuple[list[list[int]], list[int]]:
    """One box per connected instance of ``mask``, with the instance id it was cut from.

    Parameters
    ----------
    mask : numpy.ndarray
        Binary ``(H, W)`` mask.
    min_pixels : int
        Instances with fewer pixels get no box (slivers cut by a patch border).

    Returns
    -------
    boxes, ids : list of box, list of int
        ``label_instances(mask) == ids[k]`` recovers the mask of ``boxes[k]``.
    """
    labels = label_instances(mask)
    boxes, ids = [], []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        rows, cols = found
        if int((labels[found] == index).sum()) < min_pixels:
            continue
        boxes.append([cols.start, rows.start, cols.stop - 1, rows.stop - 1])
        ids.append(index)
    return boxes, ids


def jitter_boxes(
    boxes: torch.Tensor, *, max_shift: int, size: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """Move each side of each box by a uniform integer in ``[-max_shift, max_shift]``.

    Parameters
    ----------
    boxes : torch.Tensor
        ``(..., 4)`` boxes ``[x0, y0, x1, y1]``.
    max_shift : int, keyword-only
        Largest move of a side in pixels (0: unchanged).
    size : tuple of int, keyword-only
        ``(height, width)`` the boxes must stay inside.
    generator : torch.Generator, keyword-only
        Source of randomness (seeded per row and step by the Trainer).

    Returns
    -------
    torch.Tensor
        The moved boxes, inside the image, with ``x0 <= x1`` and ``y0 <= y1``.
    """
    if max_shift <= 0:
        return boxes
    shift = torch.randint(-max_shift, max_shift + 1, boxes.shape, generator=generator).to(boxes.dtype)
    moved = boxes + shift
    height, width = size
    limit = torch.tensor([width - 1, height - 1, width - 1, height - 1], dtype=boxes.dtype)
    moved = torch.minimum(moved.clamp(min=0), limit)
    x0 = torch.minimum(moved[..., 0], moved[..., 2])
    x1 = torch.maximum(moved[..., 0], moved[..., 2])
    y0 = torch.minimum(moved[..., 1], moved[..., 3])
    y1 = torch.maximum(moved[..., 1], moved[..., 3])
    return torch.stack([x0, y0, x1, y1], dim=-1)


def row_boxes(row: dict, mode: str) -> list[list[int]]:
    """The box prompts of one prepared dataset row in a box mode (at least one box).

    ``instance`` gives the row's instance boxes, or its union box when it has none (only slivers);
    ``union`` and ``tile`` give one box.

    Parameters
    ----------
    row : dict
        A row of a split made by ``sam-mito prepare``.
    mode : str
        One of :data:`BOX_COLUMNS`.

    Returns
    -------
    list of box
    """
    if mode not in BOX_COLUMNS:
        raise SamMitoError(f"prompt mode '{mode}': expected one of {tuple(BOX_COLUMNS)}")
    if mode == "instance":
        return [list(box) for box in row["instance_boxes"]] or [list(row["union_box"])]
    return [list(row[BOX_COLUMNS[mode]])]
