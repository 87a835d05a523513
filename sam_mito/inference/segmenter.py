"""Segment full slices and volumes: tiles with a context margin, one encoder pass each, stitched back.

A slice is cut into ``tile`` x ``tile`` tiles (the patch size the model was fine-tuned on, read
from its saved config), overlapping by ``overlap`` pixels (default 0); tiles at the right and
bottom edges are shifted back inside the image, and images smaller than a tile are mirror-padded.
Each tile is encoded once within a window that adds ``halo`` pixels of context on every side
(mirrored at the slice's edges, as micro-sam tiles), prompted, and only the tile's own pixels are
kept, so objects cut by a tile border are seen whole. Overlapping tiles are blended with weights
that fall linearly to almost zero at the tile's edges.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
import torch
from tqdm.auto import tqdm
from transformers import SamModel, SamProcessor

from sam_mito.data.prompts import GRID_SIZE, PREDICT_MODES, grid_points, label_instances, tile_box
from sam_mito.errors import SamMitoError
from sam_mito.features.encoding import check_precision, encode, pixel_values
from sam_mito.features.precision import Resolution, resolve_precision
from sam_mito.files import atomic_file, check_outputs
from sam_mito.models.decoding import Box, decode_probabilities
from sam_mito.models.families import input_size
from sam_mito.models.loading import load_sam
from sam_mito.volumes.reading import open_volume
from sam_mito.volumes.volume import NORMALIZATION

logger = logging.getLogger(__name__)

DEFAULT_TILE = 256
#: Default context margin: each 256-px tile is encoded within a 320-px window, so a 768x1024 slice
#: costs 12 encoder passes (overlap-blend tiles cost 20); it scored higher than overlap-blend both on
#: held-out EPFL slices (benchmarks/tiling.py) and on the demo's synthetic slice, which 64 did not.
DEFAULT_HALO = 32


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length``, overlapping by at least ``overlap``.

    The last tile is moved back to end at the edge; a ``length`` shorter than a tile gives ``[0]``.
    """
    if not 0 <= overlap < tile:
        raise SamMitoError(f"overlap {overlap}: expected 0 <= overlap < tile ({tile})")
    if length <= tile:
        return [0]
    step = tile - overlap
    origins = list(range(0, length - tile, step))
    return origins + [length - tile]


def blend_weights(tile: int, overlap: int) -> np.ndarray:
    """``(tile, tile)`` blending weights: 1 in the middle, falling linearly to ~0 across ``overlap``."""
    ramp = np.ones(tile, dtype=np.float32)
    if overlap > 0:
        edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        ramp[:overlap] = np.minimum(ramp[:overlap], edge)
        ramp[-overlap:] = np.minimum(ramp[-overlap:], edge[::-1])
    return np.outer(ramp, ramp)


def stitch(
    shape: tuple[int, int], tiles: Iterator[tuple[int, int, np.ndarray]], *, overlap: int
) -> np.ndarray:
    """Blend ``(y, x, values)`` tiles into one ``shape`` map, weighting each by :func:`blend_weights`.

    Where tiles agree the result equals them exactly; where they differ it moves smoothly from one
    to the other across the overlap. Pixels no tile covers are 0.
    """
    total = np.zeros(shape, dtype=np.float32)
    weight = np.zeros(shape, dtype=np.float32)
    for y, x, values in tiles:
        height, width = values.shape
        w = blend_weights(max(height, width), overlap)[:height, :width]
        total[y : y + height, x : x + width] += w * values
        weight[y : y + height, x : x + width] += w
    return np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)


def check_tile(tile: int | None, config, *, name: str = "tile") -> None:
    """Refuse a tile side that is not positive or exceeds the model's input size.

    A larger tile would be shrunk to the encoder's input, losing detail, and far larger ones
    would exhaust memory.

    Parameters
    ----------
    tile : int or None
        Tile side in pixels (None: the model's default, always valid).
    config : transformers.SamConfig
        The model's configuration (its input size, :func:`sam_mito.models.families.input_size`).
    name : str, keyword-only
        How the caller calls the setting, repeated in the error (``--tile`` on the command line).
    """
    if tile is None:
        return
    limit = input_size(config)
    if not 0 < tile <= limit:
        raise SamMitoError(
            f"{name} {tile}: expected 1 to {limit} pixels (the model's input size; larger tiles would "
            "be shrunk to it)"
        )


def check_output_file(path: str | Path | None, *, name: str = "output_path") -> None:
    """Refuse an output file path that is a folder, or whose folder is missing or a file.

    Parameters
    ----------
    path : str, Path or None
        The file about to be written (None: nothing to check).
    name : str, keyword-only
        How the caller calls it, repeated in the error (``--output`` on the command line).
    """
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise SamMitoError(f"{path}: {name} is an existing folder; expected a file path such as mask.tif")
    if not path.parent.is_dir():
        problem = "is not a folder" if path.parent.exists() else "does not exist"
        raise SamMitoError(f"{path}: {name}'s folder {path.parent} {problem}")


def _boxes_in_tile(boxes: list[Box], y: int, x: int, tile: int) -> list[Box]:
    """The part of each box inside the tile at ``(y, x)``, in tile coordinates (none if outside)."""
    clipped = []
    for x0, y0, x1, y1 in boxes:
        cx0, cy0 = max(x0, x) - x, max(y0, y) - y
        cx1, cy1 = min(x1, x + tile - 1) - x, min(y1, y + tile - 1) - y
        if cx0 <= cx1 and cy0 <= cy1:
            clipped.append([cx0, cy0, cx1, cy1])
    return clipped


class Segmenter:
    """Prompt a SAM on overlapping tiles of whole slices and blend the tiles' probabilities.

    Parameters
    ----------
    model, processor : SamModel, SamProcessor
        Any SAM checkpoint, fine-tuned or stock.
    mode : str, keyword-only
        ``tile`` (one box over each whole tile), ``grid`` (``grid_size`` x ``grid_size``
        positive points per tile) or ``boxes`` (the caller's boxes, clipped to each tile).
    tile, overlap : int, keyword-only
        Tile side and minimum overlap in pixels; ``tile`` defaults to the patch size the model was
        fine-tuned on (``config.sam_mito["patch_size"]``), else 256.
    halo : int, keyword-only
        Context margin: each encoder pass sees the tile plus ``halo`` pixels on every side
        (mirrored at the image's edges).
    cores_only : bool, keyword-only
        Keep only each tile's own pixels, as micro-sam tiles; by default neighbouring windows are
        blended across their overlapping margins instead, so no seam shows at tile borders.
    precision : str, keyword-only
        Encoder precision, one of :data:`sam_mito.features.precision.PRECISIONS`; ``auto`` (the default) is
        resolved on the first tile encoded (:func:`sam_mito.features.precision.resolve_precision`) and the
        result, kept in ``resolution``, is reused for every later tile.

    Attributes
    ----------
    encoder_passes : int
        Tiles encoded so far (the one-time ``auto`` check's second encode is not counted).
    resolution : Resolution or None
        What ``precision`` resolved to, once a tile has been encoded.
    """

    def __init__(
        self,
        model: SamModel,
        processor: SamProcessor,
        *,
        mode: str = "tile",
        tile: int | None = None,
        overlap: int = 0,
        halo: int = DEFAULT_HALO,
        cores_only: bool = False,
        grid_size: int = GRID_SIZE,
        precision: str = "auto",
    ) -> None:
        if mode not in PREDICT_MODES:
            raise SamMitoError(f"mode '{mode}': expected one of {PREDICT_MODES}")
        check_precision(precision)
        trained = getattr(model.config, "sam_mito", None) or {}
        check_tile(tile, model.config)
        self.tile = int(trained.get("patch_size", DEFAULT_TILE) if tile is None else tile)
        self.normalization = trained.get("normalization", NORMALIZATION)
        tile_origins(self.tile, self.tile, overlap)  # validates overlap against the tile
        if halo < 0:
            raise SamMitoError(f"halo {halo}: expected a context margin of 0 or more pixels")
        self.halo, self.cores_only = halo, cores_only
        self.model, self.processor = model.eval(), processor
        self.mode, self.overlap, self.grid_size, self.precision = mode, overlap, grid_size, precision
        self.encoder_passes = 0
        self.resolution: Resolution | None = None

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs) -> Segmenter:
        """Load a SAM by Hub id or folder (see :func:`sam_mito.models.loading.load_sam`) and wrap it."""
        model, processor = load_sam(name_or_path)
        return cls(model, processor, **kwargs)

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.resolution is None:
            resolution = resolve_precision(self.model, pixels, self.precision)
            self.resolution = resolution._replace(embeddings=None)
            if resolution.embeddings is not None:
                return resolution.embeddings
        return encode(self.model, pixels, precision=self.resolution.precision)

    def _tile_probability(self, image: np.ndarray, boxes: list[Box] | None) -> np.ndarray:
        size = image.shape
        if self.mode == "boxes" and not boxes:
            return np.zeros(size, dtype=np.float32)
        embeddings = self._encode(pixel_values(self.processor, [image]))
        self.encoder_passes += 1
        if self.mode == "boxes":
            prompt = {"boxes": torch.tensor([boxes], dtype=torch.float32)}
        elif self.mode == "tile":
            prompt = {"boxes": torch.tensor([[tile_box(*size)]], dtype=torch.float32)}
        else:
            points = grid_points(*size, n=self.grid_size)
            prompt = {"points": torch.tensor([[points]], dtype=torch.float32)}
        return decode_probabilities(self.model, embeddings, size, **prompt)[0].amax(dim=0).numpy()

    def probabilities(self, image: np.ndarray, boxes: list[Box] | None = None) -> np.ndarray:
        """Foreground probability ``(H, W)`` float32 of one ``uint8`` grayscale slice.

        ``boxes`` (``[x0, y0, x1, y1]`` in slice pixels) are required in ``boxes`` mode and ignored
        otherwise; a tile that no box touches is not encoded and scores 0.
        """
        image = np.asarray(image)
        if image.ndim != 2:
            raise SamMitoError(f"slice has shape {image.shape}; expected a 2-D (height, width) image")
        if self.mode == "boxes" and boxes is None:
            raise SamMitoError("mode 'boxes' needs boxes: pass boxes=[[x0, y0, x1, y1], ...]")
        height, width = image.shape
        tile, halo = self.tile, self.halo
        covered = (max(height, tile), max(width, tile))
        padded = np.pad(
            image, ((halo, halo + covered[0] - height), (halo, halo + covered[1] - width)), mode="symmetric"
        )
        side = tile + 2 * halo  # what one encoder pass sees: the tile and its context margin

        keep = slice(halo, halo + tile) if self.cores_only else slice(0, side)

        def tiles() -> Iterator[tuple[int, int, np.ndarray]]:
            for y in tile_origins(height, tile, self.overlap):
                for x in tile_origins(width, tile, self.overlap):
                    window = padded[y : y + side, x : x + side]
                    inside = _boxes_in_tile(boxes, y - halo, x - halo, side) if self.mode == "boxes" else None
                    yield y + keep.start, x + keep.start, self._tile_probability(window, inside)[keep, keep]

        # in padded coordinates; blending windows ramps across their overlapping margins
        blend = self.overlap if self.cores_only else self.overlap + 2 * halo
        stitched = stitch(padded.shape, tiles(), overlap=blend)
        return stitched[halo : halo + height, halo : halo + width]

    def segment(
        self, image: np.ndarray, boxes: list[Box] | None = None, *, threshold: float = 0.5, min_size: int = 0
    ) -> np.ndarray:
        """Binary ``uint8`` mask (0/255) of one slice; see :meth:`probabilities` and :func:`postprocess`."""
        return postprocess(self.probabilities(image, boxes), threshold=threshold, min_size=min_size)


def postprocess(probability: np.ndarray, *, threshold: float = 0.5, min_size: int = 0) -> np.ndarray:
    """Threshold a probability map into a 0/255 ``uint8`` mask, dropping objects under ``min_size`` pixels."""
    mask = probability > threshold
    if min_size > 0:
        labels = label_instances(mask)
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        mask &= ~small[labels]
    return mask.astype(np.uint8) * 255


def read_boxes(path: str | Path, shape: tuple[int, ...]) -> dict[int, list[Box]]:
    """Read a boxes JSON file and check every box lies inside the ``(Z, H, W)`` volume.

    The file holds either a list of ``[x0, y0, x1, y1]`` boxes (used on every slice) or an object
    mapping slice indices to such lists (``{"0": [[10, 12, 80, 90]], "7": [...]}``); coordinates
    are pixels of the slice, inclusive.
    """
    depth, height, width = shape
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SamMitoError(f"{path}: cannot read boxes JSON ({err})") from err
    if isinstance(data, list):
        data = {str(z): data for z in range(depth)}
    if not isinstance(data, dict):
        raise SamMitoError(f"{path}: expected a list of boxes or an object of slice index -> boxes")
    per_slice = {}
    for key, boxes in data.items():
        if not (str(key).isdigit() and int(key) < depth):
            raise SamMitoError(f"{path}: slice key '{key}' is not a slice index in 0..{depth - 1}")
        if not isinstance(boxes, list):
            raise SamMitoError(f"{path}: slice {key}: expected a list of [x0, y0, x1, y1] boxes")
        for box in boxes:
            if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
                raise SamMitoError(f"{path}: slice {key}: box {box!r} is not [x0, y0, x1, y1]")
            x0, y0, x1, y1 = box
            if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
                raise SamMitoError(
                    f"{path}: slice {key}: box {box} is outside the {width}x{height} image "
                    "(expected 0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height)"
                )
        per_slice[int(key)] = boxes
    return per_slice


def predict_stack(
    segmenter: Segmenter,
    input_path: str | Path,
    output_path: str | Path,
    *,
    boxes_path: str | Path | None = None,
    probabilities_path: str | Path | None = None,
    threshold: float = 0.5,
    min_size: int = 0,
) -> tuple[int, ...]:
    """Segment an image, stack or slice folder into a 0/255 ``uint8`` TIFF of the same shape.

    The input is normalised by the rule the model was trained with (``config.sam_mito``), after
    one pass that refuses non-finite intensities. Slices stream through one at a time; the mask
    (and the float32 probability map, if asked for) are written to temporary files beside the
    outputs and renamed into place only when every slice is done, so a failure leaves nothing
    half-written. An output may not be an input, lie inside an input folder, be a folder, or
    name the same path as the other output. Returns the output shape.
    """
    outputs = {"output_path": output_path, "probabilities_path": probabilities_path}
    check_outputs(outputs, {"input_path": input_path, "boxes_path": boxes_path})
    for name, path in outputs.items():
        check_output_file(path, name=name)
    volume = open_volume(input_path)
    volume_shape = volume.shape
    shape = volume.shape[1:] if volume.single_image else volume.shape
    boxes = read_boxes(boxes_path, volume_shape) if boxes_path is not None else None
    if segmenter.mode == "boxes" and boxes is None:
        raise SamMitoError("mode 'boxes' needs a boxes JSON file (--boxes)")
    slices = volume.slices(segmenter.normalization)
    first = next(slices)  # checks the rule and scans the volume (NaN, inf) before anything is written
    targets = [Path(output_path)] + ([Path(probabilities_path)] if probabilities_path else [])
    with contextlib.ExitStack() as files:  # writers close before their files are renamed into place
        writers = [
            files.enter_context(tifffile.TiffWriter(files.enter_context(atomic_file(t)))) for t in targets
        ]
        slices = itertools.chain([first], slices)
        progress = tqdm(slices, total=volume_shape[0], desc="predicting", unit="slice")
        for index, image in enumerate(progress):
            probability = segmenter.probabilities(image, boxes.get(index, []) if boxes else None)
            writers[0].write(
                postprocess(probability, threshold=threshold, min_size=min_size), contiguous=True
            )
            if len(writers) > 1:
                writers[1].write(probability, contiguous=True)
    logger.info("wrote %s %s (%d encoder passes)", output_path, shape, segmenter.encoder_passes)
    return shape
