"""The import contract in pyproject.toml holds, and it fails on an upward import or a hidden cycle."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is a dev dependency")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy's sam_mito, not the installed one
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "sam_mito", tree / "sam_mito", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    return tree


def test_the_package_keeps_its_layers_and_has_no_cycles():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path):
    tree = _copy(tmp_path)
    with open(tree / "sam_mito" / "volumes" / "volume.py", "a") as module:
        module.write(
            "\n\ndef _late():\n    from sam_mito.inference.segmenter import Segmenter  # noqa: F401\n"
        )
    result = _lint(tree)
    assert result.returncode == 1
    assert "sam_mito.volumes is not allowed to import sam_mito.inference" in result.stdout


def test_a_cycle_hidden_in_a_function_level_import_breaks_the_contract(tmp_path):
    tree = _copy(tmp_path)
    with open(tree / "sam_mito" / "features" / "encoding.py", "a") as module:
        module.write("\n\ndef _late():\n    from sam_mito.features.cache import build_cache  # noqa: F401\n")
    result = _lint(tree)
    assert result.returncode == 1
    assert "No cycles are allowed in sam_mito.features" in result.stdout
