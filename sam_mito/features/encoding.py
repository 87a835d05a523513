"""The frozen vision encoder's one encode path: images to pixel values to float32 embeddings.

Precisions a caller may ask for are named here; ``auto`` is resolved by
:mod:`sam_mito.features.precision`, which calls :func:`encode` in both concrete precisions.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from transformers import SamModel, SamProcessor

from sam_mito.defaults import CONCRETE_PRECISIONS, PRECISIONS
from sam_mito.errors import SamMitoError
from sam_mito.models.families import image_features


def check_precision(precision: str, allowed: tuple[str, ...] = PRECISIONS) -> None:
    """Raise :class:`SamMitoError` naming ``precision`` unless it is one of ``allowed``."""
    if precision not in allowed:
        raise SamMitoError(f"encode precision '{precision}': expected one of {allowed}")


def to_rgb_arrays(images: list) -> list[np.ndarray]:
    """PIL images or arrays (grayscale or RGB) as ``uint8 (H, W, 3)`` arrays for the SAM processor."""
    out = []
    for image in images:
        array = np.asarray(image)
        out.append(np.repeat(array[..., None], 3, axis=-1) if array.ndim == 2 else array[..., :3])
    return out


def pixel_values(processor: SamProcessor, images: list) -> torch.Tensor:
    """Resize, normalise and pad images to the encoder's input, ``(B, 3, S, S)`` float32."""
    return processor(images=to_rgb_arrays(images), return_tensors="pt")["pixel_values"]


def encode(model: SamModel, pixels: torch.Tensor, *, precision: str = "fp32") -> torch.Tensor:
    """Run the frozen vision encoder on ``pixels``; returns float32 embeddings ``(B, C, h, w)``.

    SAM-HQ and SAM 2.1 return one flat row per image holding every feature map their decoder needs
    (:func:`sam_mito.models.families.image_features`); :func:`sam_mito.models.decoding.decode` takes either.

    ``precision="bf16"`` runs under bfloat16 autocast (the fast path on GPUs and on CPUs with bf16
    instructions); the result is returned in float32 either way. ``auto`` is not accepted here:
    resolve it first with :func:`sam_mito.features.precision.resolve_precision`.
    """
    check_precision(precision, CONCRETE_PRECISIONS)
    device = next(model.parameters()).device
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        return image_features(model, pixels.to(device)).float()
