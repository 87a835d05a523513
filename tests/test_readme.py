"""The READMEs' Python snippets run, and their CLI reference matches the parsers."""

import re
import shlex
from pathlib import Path

import numpy as np

from sam_mito.cli.main import build_parser

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


def _commands(path: Path) -> list[list[str]]:
    """The ``sam-mito ...`` command lines of a file's bash blocks, continuation lines joined."""
    blocks = re.findall(r"^```bash\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line.split("#")[0])[1:] for line in lines if line.strip().startswith("sam-mito ")]


def test_every_readme_command_parses_with_the_real_parser():
    commands = _commands(ROOT / "README.md")
    assert {argv[0] for argv in commands} == {"prepare", "train", "evaluate", "predict", "score"}
    parser = build_parser()
    for argv in commands:
        args, extra = parser.parse_known_args(argv)  # a misspelt flag exits with status 2
        assert not extra or args.command == "train", argv  # train passes TrainingArguments through
