"""Card metadata (licence, size category), JSON made shareable, card templates, atomic files."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard

from sam_mito.data.dataset_folder import size_category
from sam_mito.data.patches import prepare_dataset
from sam_mito.hub_cards import card_template
from sam_mito.paths import public_json

ROOT = Path(__file__).resolve().parents[2]


def test_synthetic_data_is_licensed_like_sam_mito(tmp_path):
    prepare_dataset(tmp_path / "ds", synthetic_shape=(4, 256, 256), seed=0)
    data = DatasetCard.load(tmp_path / "ds" / "README.md").data.to_dict()
    assert data["license"] == "apache-2.0" and "license_name" not in data


@pytest.mark.parametrize(
    ("rows", "category"),
    [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (54_321, "10K<n<100K"), (2 * 10**6, "1M<n<10M")],
)
def test_size_categories_follow_the_hub_buckets(rows, category):
    assert size_category(rows) == category


def test_shared_json_holds_no_local_paths(tmp_path):
    settings = {
        "output_dir": str(tmp_path / "model"),
        "logging_dir": str(tmp_path / "model" / "runs" / "Nov25"),
        "dataset": str(tmp_path / "patches"),
        "relative": "./patches",
        "home": "~/data/patches",
        "hub": "me/patches",
        "mode": "union box (from ground truth)",
        "nested": [{"path": str(tmp_path)}, 3, None],
    }
    public = public_json(settings)
    assert public == {
        "output_dir": "model",
        "logging_dir": "Nov25",
        "dataset": "patches",
        "relative": "patches",
        "home": "patches",
        "hub": "me/patches",
        "mode": "union box (from ground truth)",
        "nested": [{"path": tmp_path.name}, 3, None],
    }


def test_templates_are_found_in_the_installed_package():
    assert "{{ card_data }}" in card_template("dataset_card.md")


@pytest.mark.slow
def test_non_editable_install_ships_the_templates_inside_sam_mito(tmp_path):
    target, source = tmp_path / "site", tmp_path / "source"
    # A copy, so no `build/` folder left in the checkout by an earlier build leaks into this one.
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import importlib.util, sam_mito, sam_mito.hub.cards as h; print(importlib.util.find_spec('hub_cards')); "
        "print(sam_mito.__file__); print(len(h.card_template('dataset_card.md')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    top_level, location, size = result.stdout.split()
    assert top_level == "None"  # no top-level `hub_cards` package was installed
    assert location.startswith(str(target)) and int(size) > 500
    assert (target / "sam_mito" / "hub_cards" / "model_card.md").is_file()


def test_atomic_file_appears_only_when_the_block_succeeds(tmp_path):
    from sam_mito.files import atomic_file

    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as partial:
        partial.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
    with atomic_file(target) as partial:
        partial.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
