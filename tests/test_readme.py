"""The READMEs' Python snippets run, and their CLI reference matches the parsers."""

import argparse
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from sam_mito.cli import build_parser
from sam_mito.config import SamMitoConfig

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    text = path.read_text()
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", text, flags=re.S | re.M)
    return ["\n".join(line[len(indent) :] for line in body.splitlines()) for indent, body in blocks]


def test_readme_python_api_runs(tmp_path, monkeypatch):
    (snippet,) = _python_blocks(ROOT / "README.md")
    smaller = {
        "max_steps=300": "max_steps=3",
        "(24, 512, 512)": "(8, 256, 256)",
        "(1, 768, 1024)": "(1, 256, 384)",
    }
    for old, new in smaller.items():
        assert old in snippet, old
        snippet = snippet.replace(old, new)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAM_MITO_CACHE", str(tmp_path / "cache"))
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["mask"].shape == namespace["image"].shape == (256, 384)
    assert set(np.unique(namespace["mask"])) <= {0, 255}
    assert (tmp_path / "model" / "comparison.png").exists()
    assert namespace["report"]["table"].count("\n") == 1 + len(namespace["report"]["results"])


def test_examples_readme_stock_transformers_snippet_runs(tiny_model_dir, dataset_dir):
    (snippet,) = _python_blocks(ROOT / "examples" / "README.md")
    snippet = snippet.replace("you/sam-mito-epfl", str(tiny_model_dir))
    snippet = snippet.replace("you/epfl-mito-patches", str(dataset_dir))
    namespace: dict = {}
    exec(compile(snippet, "examples/README.md", "exec"), namespace)
    assert namespace["mask"].shape == (256, 256) and namespace["mask"].dtype == bool


def _reference(command: str) -> str:
    section = (ROOT / "README.md").read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"^- `sam-mito {command}.*?(?=^- `sam-mito |\Z)", section, flags=re.S | re.M)
    assert match, f"README's command line section does not describe `sam-mito {command}`"
    return match.group(0)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["prepare", "evaluate", "predict", "demo"])
def test_cli_reference_lists_exactly_each_commands_options(command):
    parser = _subparsers()[command]
    options = {o for a in parser._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
    documented = set(re.findall(r"--[a-z][a-z0-9-]*", _reference(command)))
    assert documented == options


def test_cli_reference_for_train_names_real_config_fields():
    assert "train" in _subparsers()
    names = {f.name for f in fields(SamMitoConfig)}
    documented = set(re.findall(r"--([a-z_]+)", _reference("train"))) - {"field", "help"}
    assert len(documented) > 10
    assert {name.removeprefix("no_") for name in documented} <= names
