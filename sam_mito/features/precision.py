"""Encoder precision: ``auto`` runs bf16 autocast where the hardware has bf16, checked, else fp32.

bf16 autocast ran the ViT-B encoder 2.0x faster than fp32 on a CPU with AVX-512 BF16 and 5x
slower on an AVX2-only one (issue 16; BENCHMARKS.md of 2026-11-25 and 2026-11-24), so ``auto`` asks torch what the device
offers and, where bf16 is native, encodes the first batch in both precisions and keeps bf16 only if
its embeddings stay within :data:`MAX_BF16_RELATIVE_ERROR` of the fp32 ones.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from transformers import SamModel

from sam_mito.features.encoding import check_precision, encode

logger = logging.getLogger(__name__)

#: Largest relative L2 error of bf16 embeddings against fp32 that ``auto`` accepts.
MAX_BF16_RELATIVE_ERROR = 0.01
#: Keys of ``torch.cpu.get_capabilities()`` naming native bf16 matrix instructions.
CPU_BF16_FEATURES = ("avx512_bf16", "amx_bf16")


class Resolution(NamedTuple):
    """What a requested precision resolved to.

    Attributes
    ----------
    precision : str
        ``fp32`` or ``bf16``.
    bf16_relative_error : float or None
        ``||bf16 - fp32|| / ||fp32||`` on the first batch, or None when it was not measured.
    embeddings : torch.Tensor or None
        The first batch's float32 embeddings in ``precision`` when the check computed them (so
        the caller need not encode that batch again), else None.
    """

    precision: str
    bf16_relative_error: float | None
    embeddings: torch.Tensor | None


def hardware_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 matrix products natively (not emulated).

    Parameters
    ----------
    device : torch.device or str
        Where the encoder runs.

    Returns
    -------
    bool
        On CUDA, ``torch.cuda.is_bf16_supported(including_emulation=False)`` for that device
        (compute capability 8.0 or newer, or ROCm); on CPU, whether ``torch.cpu.get_capabilities()``
        reports AVX-512 BF16 or AMX BF16; False on any other device.
    """
    device = torch.device(device)
    if device.type == "cuda":
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return any(capabilities.get(feature, False) for feature in CPU_BF16_FEATURES)
    return False


def bf16_acceptable(relative_error: float) -> bool:
    """Whether a measured bf16 relative error is within :data:`MAX_BF16_RELATIVE_ERROR` (NaN is not)."""
    return relative_error <= MAX_BF16_RELATIVE_ERROR


def resolve_precision(model: SamModel, pixels: torch.Tensor, precision: str) -> Resolution:
    """Turn a requested encoder precision into the one to run, checking ``auto`` on ``pixels``.

    Parameters
    ----------
    model : SamModel
        The SAM whose vision encoder will run; its parameters' device is the one asked about.
    pixels : torch.Tensor
        The first batch, ``(B, 3, S, S)`` as from :func:`sam_mito.features.cache.pixel_values`; encoded
        only for ``auto`` on bf16 hardware.
    precision : str
        One of :data:`PRECISIONS`. ``fp32`` and ``bf16`` pass through unchanged.

    Returns
    -------
    Resolution
        For ``auto``: ``fp32`` without encoding where :func:`hardware_bf16` is False; otherwise the
        batch is encoded in fp32 and under bf16 autocast, and bf16 is kept only if
        :func:`bf16_acceptable` accepts the relative L2 error. The choice is logged.
    """
    check_precision(precision)
    if precision != "auto":
        return Resolution(precision, None, None)
    device = next(model.parameters()).device
    if not hardware_bf16(device):
        logger.info("encoder precision auto -> fp32 (%s reports no native bf16)", device)
        return Resolution("fp32", None, None)
    fp32 = encode(model, pixels, precision="fp32")
    bf16 = encode(model, pixels, precision="bf16")
    error = float((bf16 - fp32).norm() / fp32.norm())
    chosen = "bf16" if bf16_acceptable(error) else "fp32"
    logger.info(
        "encoder precision auto -> %s (bf16 relative L2 error %.2e vs fp32 on the first batch, limit %.0e)",
        chosen,
        error,
        MAX_BF16_RELATIVE_ERROR,
    )
    return Resolution(chosen, error, bf16 if chosen == "bf16" else fp32)
