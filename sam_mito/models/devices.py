"""Which device a model runs on: the caller's choice, checked, else CUDA when present, else the CPU.

Under ``accelerate launch`` the default is the process's own device (its GPU, or the CPU), as
accelerate assigns it; a plain process gets ``cuda`` when torch sees a GPU, else ``cpu``.
"""

from __future__ import annotations

import os

import torch

from sam_mito.errors import SamMitoError

#: Device types a model may be put on.
DEVICE_TYPES = ("cpu", "cuda", "mps", "meta")


def default_device() -> torch.device:
    """The device a model runs on when the caller names none (see the module docstring)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "LOCAL_RANK" in os.environ:
        from accelerate import PartialState

        return PartialState(cpu=not torch.cuda.is_available()).device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device ``device`` names, checked against this machine; None picks :func:`default_device`.

    Parameters
    ----------
    device : str, torch.device or None
        ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (or ``meta``, which holds no data: for tests).

    Returns
    -------
    torch.device

    Raises
    ------
    SamMitoError
        If ``device`` is not a device name, or names a device this machine does not have.
    """
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise SamMitoError(f"device '{device}': expected one of cpu, cuda, cuda:N, mps") from err
    if resolved.type not in DEVICE_TYPES:
        raise SamMitoError(f"device '{device}': expected one of cpu, cuda, cuda:N, mps")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SamMitoError(f"device '{device}': torch sees no CUDA GPU here; pass --device cpu")
        if resolved.index is not None and resolved.index >= count:
            raise SamMitoError(f"device '{device}': this machine has {count} CUDA device(s), 0..{count - 1}")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise SamMitoError(f"device '{device}': MPS is not available here; pass --device cpu")
    return resolved
