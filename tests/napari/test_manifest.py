"""The plugin's npe2 manifest is valid, installed through its entry point, and shipped with the package."""

import configparser
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from npe2 import PluginManifest

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "sam_mito" / "napari" / "napari.yaml"


def test_npe2_validates_the_manifest_and_imports_every_command():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run(
        [str(npe2), "validate", "sam-mito", "--imports"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_the_entry_point_names_the_packaged_manifest_and_its_contributions():
    (entry,) = [e for e in metadata.entry_points(group="napari.manifest") if e.name == "sam-mito"]
    assert entry.value == "sam_mito.napari:napari.yaml"
    manifest = PluginManifest.from_distribution("sam-mito")
    assert manifest == PluginManifest.from_file(MANIFEST)
    assert [w.display_name for w in manifest.contributions.widgets] == ["Segment mitochondria", "Measure"]
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories and set(reader.filename_patterns) == {"*.zarr", "*.tif", "*.tiff"}


def test_setup_cfg_ships_the_manifest_and_the_napari_extra():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "napari.yaml" in config["options.package_data"]["sam_mito.napari"]
    assert "sam_mito.napari" in config["options"]["packages"].split()
    extra = config["options.extras_require"]["napari"].split()
    assert any(line.startswith("napari>=") for line in extra)
    assert "sam-mito[napari]" in config["options.extras_require"]["dev"].split()
