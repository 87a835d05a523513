"""Every napari command the README and the plugin's page show opens sam-mito's outputs with our reader."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = [ROOT / "README.md", ROOT / "docs" / "napari.md"]
PLUGIN = "sam-mito"


def _napari_commands(path: Path) -> list[list[str]]:
    """The ``napari ...`` lines of a file's bash blocks, as words (continuations joined, comments dropped)."""
    blocks = re.findall(r"^ *```bash\n(.*?)^ *```", path.read_text(), flags=re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    commands = [shlex.split(line.split("#")[0]) for line in lines]
    return [words for words in commands if words and words[0] == "napari"]


def test_every_documented_napari_command_opens_the_outputs_it_names(outputs, make_napari_viewer):
    commands = [(path.name, words) for path in DOCUMENTED for words in _napari_commands(path)]
    assert any(name == "napari.md" for name, _ in commands)  # the plugin's page shows one at least
    for name, words in commands:
        assert words[1:3] == ["--plugin", PLUGIN], (name, words)  # napari's own reader would ask which
        paths = words[3:]
        assert paths and all((outputs / p).exists() for p in paths), (name, paths)
        viewer = make_napari_viewer()
        viewer.open([str(outputs / p) for p in paths], plugin=PLUGIN)
        opened = {layer.name: type(layer).__name__ for layer in viewer.layers}
        expected = {Path(p).stem: "Labels" if ("mask" in p or "labels" in p) else "Image" for p in paths}
        assert opened == expected, (name, words)
