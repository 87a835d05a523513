"""The ``sam-mito`` command: ``prepare | train | evaluate | predict | score | demo``, thin over the library."""

from __future__ import annotations

import argparse
import logging
import sys

from sam_mito.cli import demo, evaluate, predict, prepare, score, train
from sam_mito.errors import SamMitoError

logger = logging.getLogger("sam_mito")


def build_parser() -> argparse.ArgumentParser:
    """The ``sam-mito`` argument parser with one sub-command per pipeline stage."""
    parser = argparse.ArgumentParser(prog="sam-mito", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


#: One module per command, each with ``add_parser(commands)`` and ``run(args)``.
COMMANDS = [prepare, train, evaluate, predict, score, demo]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; bad input prints one line and returns status 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.handler(args)
    except SamMitoError as err:
        print(f"sam-mito {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
