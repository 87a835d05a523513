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

import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import hf_hub_download
from transformers import SamModel, SamProcessor

from sam_mito.data.prompts import grid_points, tile_box
from sam_mito.defaults import DEFAULT_HALO, GRID_SIZE, PREDICT_MODES, TINY_BASE
from sam_mito.errors import SamMitoError
from sam_mito.features.encoding import check_precision, encode, pixel_values
from sam_mito.features.precision import Resolution, resolve_precision
from sam_mito.files import atomic_file
from sam_mito.hub.cards import INFERENCE_CONFIG
from sam_mito.hub.uploads import push_model
from sam_mito.inference.pipeline import segment_volume
from sam_mito.inference.postprocessing import PostProcessing
from sam_mito.models.decoding import Box, decode_probabilities
from sam_mito.models.families import input_size
from sam_mito.models.loading import load_sam, tiny_base_path
from sam_mito.volumes.volume import NORMALIZATION

logger = logging.getLogger(__name__)

DEFAULT_TILE = 256


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
        Encoder precision, one of :data:`sam_mito.features.encoding.PRECISIONS`; ``auto`` (the default) is
        resolved on the first tile encoded (:func:`sam_mito.features.precision.resolve_precision`)
        for the model's device and the result, kept in ``resolution``, is reused for every later tile.
    post : PostProcessing, keyword-only
        How probabilities become the mask in :meth:`segment`,
        :func:`~sam_mito.inference.pipeline.segment_volume` and ``predict_volume`` when they are
        given none; default ``PostProcessing()``, the CLI's defaults.

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
        post: PostProcessing | None = None,
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
        self.post = post if post is not None else PostProcessing()
        self.encoder_passes = 0
        self.resolution: Resolution | None = None

    @property
    def device(self) -> torch.device:
        """The device the model runs on; every input tensor is moved there."""
        return next(self.model.parameters()).device

    def settings(self) -> dict:
        """The prompt and tiling settings as JSON values (what a zarr output records of its segmenter)."""
        return {
            "mode": self.mode,
            "tile": self.tile,
            "overlap": self.overlap,
            "halo": self.halo,
            "cores_only": self.cores_only,
            "grid_size": self.grid_size,
            "precision": self.precision,
        }

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device: str | torch.device | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs,
    ) -> Segmenter:
        """Load a SAM by Hub id or folder (see :func:`sam_mito.models.loading.load_sam`) and wrap it.

        Settings saved by :meth:`save_pretrained` (``inference_config.json``) are read back;
        keyword arguments override them (``post=`` replaces the saved post-processing whole).

        Parameters
        ----------
        name_or_path : str
            Hub id, local folder, or ``sam-mito/tiny-base``.
        device : str or torch.device, keyword-only
            Default: the ``accelerate launch`` process's device, else CUDA when present, else CPU.
        revision, token : keyword-only
            As for transformers' ``from_pretrained``.
        **kwargs
            The other arguments of :class:`Segmenter`.
        """
        model, processor = load_sam(name_or_path, device=device, revision=revision, token=token)
        saved = _saved_settings(name_or_path, revision=revision, token=token)
        if "postprocessing" in saved:
            saved["post"] = PostProcessing(**saved.pop("postprocessing"))
        return cls(model, processor, **{**saved, **kwargs})

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the model, its processor and the inference settings (``inference_config.json``)."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        with atomic_file(folder / INFERENCE_CONFIG) as partial:
            settings = {**self.settings(), "postprocessing": self.post.settings()}
            partial.write_text(json.dumps(settings, indent=2) + "\n")
        return folder

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None):
        """Upload what :meth:`save_pretrained` writes (and nothing else) to the Hub model ``repo_id``."""
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return push_model(folder, repo_id, token=token, private=private)

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
        return decode_probabilities(self.model, embeddings, size, **prompt)[0].amax(dim=0).cpu().numpy()

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
        self, image: np.ndarray, boxes: list[Box] | None = None, *, post: PostProcessing | None = None
    ) -> np.ndarray:
        """Binary ``uint8`` mask (0/255) of one 2-D image, post-processed as ``sam-mito predict`` does.

        The same as :func:`~sam_mito.inference.pipeline.segment_volume` on the image: threshold,
        hole filling and the 2-D size filter of ``post`` (default :attr:`post`).
        """
        image = np.asarray(image)
        if image.ndim != 2:
            raise SamMitoError(f"image has shape {image.shape}; expected a 2-D (height, width) image")
        return segment_volume(self, image, boxes=boxes, post=post, labels=False).mask


def _saved_settings(name_or_path: str, **hub) -> dict:
    """The settings in a checkpoint's ``inference_config.json``, or {} when it has none."""
    local = Path(tiny_base_path() if name_or_path == TINY_BASE else name_or_path)
    if local.is_dir():
        path = local / INFERENCE_CONFIG
        if not path.exists():
            return {}
    else:
        try:
            path = hf_hub_download(
                name_or_path, INFERENCE_CONFIG, **{k: v for k, v in hub.items() if v is not None}
            )
        except (OSError, ValueError):  # not on the Hub (or offline): no saved settings
            return {}
    try:
        return dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise SamMitoError(f"{path}: not a JSON object of inference settings ({err})") from err
