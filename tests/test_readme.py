"""The READMEs' Python snippets run, and their CLI reference matches the parsers."""

import re
import shlex
from pathlib import Path

import numpy as np

from sam_mito.cli.main import build_parser
from sam_mito.training.config import parse_config

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


DOCUMENTED = [ROOT / "README.md", ROOT / "examples" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _command_lines(path: Path) -> list[str]:
    """The lines of a file's bash blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"^ *```bash\n(.*?)^ *```", path.read_text(), flags=re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _sam_mito_argv(line: str) -> list[str] | None:
    """The sam-mito arguments of a command line (plain, ``python -m`` or ``accelerate launch -m``)."""
    words = shlex.split(line)
    if words[0] == "sam-mito":
        return words[1:]
    if "-m" in words and words[words.index("-m") + 1] == "sam_mito":
        return words[words.index("-m") + 2 :]
    return None


def test_the_readme_shows_every_command():
    commands = [argv for line in _command_lines(ROOT / "README.md") if (argv := _sam_mito_argv(line))]
    assert {argv[0] for argv in commands} == {"prepare", "train", "evaluate", "predict", "score", "measure"}


def test_every_documented_command_parses_with_the_real_parsers(monkeypatch):
    monkeypatch.chdir(ROOT)  # the config files the commands name are the repository's
    parser = build_parser()
    seen = 0
    for path in DOCUMENTED:
        for line in _command_lines(path):
            argv = _sam_mito_argv(line)
            if argv is None:
                continue
            args, extra = parser.parse_known_args(argv)  # a misspelt flag exits with status 2
            if args.command == "train":
                if argv[1:2] and argv[1].endswith(".yaml") and not Path(argv[1]).exists():
                    argv[1] = str(Path("examples") / argv[1])  # examples/README.md runs in examples/
                parse_config(argv[1:])  # every flag and the YAML's fields, as train reads them
            else:
                assert not extra, (path.name, line)
            seen += 1
    assert seen >= 10


def test_every_documented_accelerate_launch_says_how_many_processes():
    for path in DOCUMENTED:
        for line in _command_lines(path):
            if line.startswith("accelerate launch") and "multi_gpu.yaml" in line:
                assert "--num_processes" in line, (path.name, line)  # accelerate refuses to start without it
