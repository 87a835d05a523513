"""The dependency floors of setup.cfg, written once there: as pip constraints, and checked against a ``pip freeze``.

``make test-min`` runs it with any Python (standard library only)::

    python tests/_floors.py constraints --override torch==2.13.0 > constraints.txt
    pip freeze | python tests/_floors.py check --override torch==2.13.0

The floors are ``install_requires`` and every extra but ``dev`` (dev tools float): each ``name>=X``
becomes ``name==X``; ``--override name==Y`` pins ``name`` to ``Y`` instead (torch: the one CPU
build on disk).
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")
_FLOOR = re.compile(r"^>=\s*([^\s,;]+)$")
PROJECT = "sam-mito"


def canonical(name: str) -> str:
    """A distribution name as pip compares it (PEP 503): ``PyYAML`` and ``pyyaml`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def requirements(setup_cfg: Path = SETUP_CFG) -> dict[str, list[tuple[str, str]]]:
    """``{"install_requires": [(name, specifier), ...], extra: [...], ...}`` from ``setup_cfg``."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    sections = {"install_requires": _lines(parser.get("options", "install_requires", fallback=""))}
    if parser.has_section("options.extras_require"):
        for extra, value in parser.items("options.extras_require"):
            sections[extra] = _lines(value)
    parsed = {}
    for section, lines in sections.items():
        parsed[section] = []
        for line in lines:
            match = _REQUIREMENT.match(line)
            if match is None:
                raise ValueError(f"{setup_cfg}: [{section}] cannot read the requirement {line!r}")
            parsed[section].append((match.group(1), match.group(2).strip()))
    return parsed


def floors(setup_cfg: Path = SETUP_CFG) -> dict[str, str]:
    """``{canonical name: floor version}`` of ``install_requires`` and every extra but ``dev``.

    Each must be written ``name>=X`` (one floor, nothing else): a floor test-min cannot pin is an error.
    """
    found: dict[str, str] = {}
    for section, reqs in requirements(setup_cfg).items():
        if section == "dev":
            continue
        for name, specifier in reqs:
            if canonical(name) == PROJECT:
                continue
            match = _FLOOR.match(specifier)
            if match is None:
                raise ValueError(
                    f"{setup_cfg}: [{section}] {name}{specifier}: expected a single floor 'name>=X' "
                    "that make test-min can pin"
                )
            found[canonical(name)] = match.group(1)
    return found


def _parse_overrides(overrides: list[str]) -> dict[str, str]:
    pins = {}
    for item in overrides:
        name, sep, version = item.partition("==")
        if not sep or not name or not version:
            raise SystemExit(f"--override {item!r}: expected name==version")
        pins[canonical(name)] = version
    return pins


def pins(overrides: list[str] | None = None, setup_cfg: Path = SETUP_CFG) -> dict[str, str]:
    """The exact version test-min installs of each floor: the floor, or its ``--override``."""
    pinned = floors(setup_cfg)
    for name, version in _parse_overrides(overrides or []).items():
        if name not in pinned:
            raise SystemExit(f"--override {name}: not a dependency in {setup_cfg}")
        pinned[name] = version
    return pinned


def constraints(overrides: list[str] | None = None, setup_cfg: Path = SETUP_CFG) -> str:
    """A pip ``--constraint`` file: one ``name==version`` a line."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins(overrides, setup_cfg).items()))


def _release(version: str) -> tuple:
    """``2.13.0+cpu``, ``2.13`` and ``2.13.0`` compare equal; anything not numeric compares as text."""
    parts = version.split("+")[0].split(".")
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return tuple(int(part) if part.isdigit() else part for part in parts)


def mismatches(freeze: str, overrides: list[str] | None = None, setup_cfg: Path = SETUP_CFG) -> list[str]:
    """What in ``pip freeze`` output differs from the pins: a missing package, another version.

    A local version label counts as the same release (``torch==2.13.0+cpu`` is ``2.13.0``).
    """
    installed = {}
    for line in freeze.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            installed[canonical(name)] = version
    problems = []
    for name, version in sorted(pins(overrides, setup_cfg).items()):
        if name not in installed:
            problems.append(f"{name}: not installed (floor {version})")
        elif _release(installed[name]) != _release(version):
            problems.append(f"{name}: {installed[name]} installed, not the floor {version}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["constraints", "check"])
    parser.add_argument("--override", action="append", default=[], metavar="NAME==VERSION")
    args = parser.parse_args(argv)
    if args.command == "constraints":
        sys.stdout.write(constraints(args.override))
        return 0
    problems = mismatches(sys.stdin.read(), args.override)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"all {len(pins(args.override))} floors installed exactly")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
