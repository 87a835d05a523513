"""Argument types and path helpers shared by the ``sam-mito`` sub-commands."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def integer(minimum: int):
    """An argparse ``type``: an integer of at least ``minimum`` (argparse names the flag on error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: expected an integer >= {minimum}")
        return value

    return parse


def odd(text: str) -> int:
    """An argparse ``type``: a positive odd integer."""
    value = integer(1)(text)
    if value % 2 == 0:
        raise argparse.ArgumentTypeError(f"{value}: expected an odd number (1, 3, 5, ...)")
    return value


def _number(text: str) -> float:
    """``text`` as a float (nan and inf included), else the argparse error of every number flag."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None


def fraction(text: str) -> float:
    """An argparse ``type``: a finite number with 0 <= value < 1."""
    value = _number(text)
    if not (math.isfinite(value) and 0 <= value < 1):
        raise argparse.ArgumentTypeError(f"{text}: expected a fraction, 0 <= value < 1")
    return value


def finite(text: str) -> float:
    """An argparse ``type``: a finite number (no nan or inf)."""
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: expected a finite number")
    return value


def local(name: str | None) -> str | None:
    """``name`` if it is an existing local path (an input to protect), else None (a Hub id)."""

    return name if name is not None and Path(name).exists() else None


def add_device(parser) -> None:
    """The ``--device`` flag of the commands that run a model."""
    parser.add_argument(
        "--device",
        help="cpu, cuda, cuda:N or mps (default: the accelerate launch process's device, else cuda "
        "when available, else cpu)",
    )
