"""The ``sam-mito`` command: ``prepare | train | evaluate | predict | score | measure | demo``, thin over the library.

Building the parser imports only the argument modules and :mod:`sam_mito.defaults`, so ``--help``
answers at once; each command imports the library when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sam_mito.cli import demo, evaluate, measure, predict, prepare, score, train
from sam_mito.cli.args import Formatter
from sam_mito.errors import SamMitoError

logger = logging.getLogger("sam_mito")

#: One module per command, each with ``add_parser(commands)`` and ``run(args)``.
COMMANDS = [prepare, train, evaluate, predict, score, measure, demo]


def build_parser() -> argparse.ArgumentParser:
    """The ``sam-mito`` argument parser with one sub-command per pipeline stage."""
    parser = argparse.ArgumentParser(
        prog="sam-mito", description=__doc__.splitlines()[0], formatter_class=Formatter
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages; tracebacks of failures"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def _causes(err: BaseException) -> str:
    """``err`` and the chain of exceptions that caused it, on one line."""
    parts = []
    while err is not None and len(parts) < 5:
        parts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return "; caused by ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the command line: bad input prints one ``error:`` line and returns 2; any other failure
    prints its cause (its traceback with ``-v``) and returns 1."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.handler(args)
    except SamMitoError as err:
        print(f"sam-mito {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if args.verbose:
            raise
        print(
            f"sam-mito {args.command}: failed: {_causes(err)} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
