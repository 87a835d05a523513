"""The flag language every ``sam-mito`` command shares: its help layout, argument types and common flags.

Importing this module, like building any command's parser, imports nothing heavy (only
:mod:`sam_mito.defaults`): ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from sam_mito.defaults import PRECISIONS


class Formatter(argparse.HelpFormatter):
    """Help that shows every option's default (unless its help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or action.required
            or "default" in text
            or default in (None, False, argparse.SUPPRESS)
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def add_command(commands: argparse._SubParsersAction, name: str, summary: str, handler, **kwargs):
    """A sub-command parser: ``summary`` in ``sam-mito --help``, errors as ``sam-mito NAME: error:``."""
    parser = commands.add_parser(
        name,
        help=summary,
        description=summary[:1].upper() + summary[1:] + ".",
        formatter_class=Formatter,
        **kwargs,
    )
    parser.set_defaults(handler=handler, command_parser=parser)
    return parser


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


def positive(text: str) -> float:
    """An argparse ``type``: a finite number > 0."""
    value = finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: expected a number > 0")
    return value


def local(name: str | None) -> str | None:
    """``name`` if it is an existing local path (an input to protect), else None (a Hub id)."""

    return name if name is not None and Path(name).exists() else None


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device`` of the commands that run a model."""
    parser.add_argument(
        "--device",
        help="cpu, cuda, cuda:N or mps (default: the accelerate launch process's device, else cuda "
        "when available, else cpu)",
    )


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision`` of the commands that run the image encoder."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="image encoder precision; auto: bf16 where the hardware runs it natively and a first check "
        "against fp32 passes, else fp32",
    )


def add_push_to_hub(parser: argparse.ArgumentParser, what: str) -> None:
    """``--push-to-hub REPO``, the same flag in every command that uploads."""
    parser.add_argument("--push-to-hub", metavar="REPO", help=f"also upload {what} to this Hub repository")


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: replace what sam-mito wrote before; never anything else."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} that sam-mito wrote before (a folder sam-mito did not write is never replaced)",
    )
