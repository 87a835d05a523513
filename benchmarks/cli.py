#!/usr/bin/env python
"""How fast the command line answers ``--help``: each command's help, timed against ``import argparse``.

Every command runs as a fresh ``python -m sam_mito ... --help`` process (the way a user starts it);
the reference is ``python -c "import argparse"`` in the same run, so the ratio does not depend on
how busy the machine is. Target: every ``--help`` under 1 s. Run alone: ``python benchmarks/cli.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

COMMANDS = ([], ["prepare"], ["train"], ["evaluate"], ["predict"], ["score"], ["demo"])
TARGET_SECONDS = 1.0


def _seconds(argv: list[str], repeats: int) -> float:
    """Median wall time of ``python ARGV`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(workdir: str, quick: bool) -> dict:
    """Median seconds of ``import argparse`` and of each command's ``--help``."""
    repeats = 3 if quick else 7
    reference = _seconds(["-c", "import argparse"], repeats)
    rows = [
        {
            "command": " ".join(["sam-mito", *command, "--help"]),
            "seconds": _seconds(["-m", "sam_mito", *command, "--help"], repeats),
        }
        for command in COMMANDS
    ]
    return {"reference_seconds": reference, "repeats": repeats, "rows": rows}


def render(result: dict) -> str:
    """The timings as a markdown section."""
    reference = result["reference_seconds"]
    lines = [
        "## Command line: `--help`",
        "",
        f'Median of {result["repeats"]} fresh processes each; `python -c "import argparse"` took '
        f"{reference:.3f} s in the same run. Target: under {TARGET_SECONDS:.0f} s.",
        "",
        "| command | seconds | × import argparse | target |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        met = "met" if row["seconds"] < TARGET_SECONDS else "missed"
        lines.append(
            f"| `{row['command']}` | {row['seconds']:.3f} | {row['seconds'] / reference:.1f} | {met} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(measure("", quick=False)))
