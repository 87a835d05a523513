"""Pushing folders to the Hub (mocked at the huggingface_hub boundary) and finding card templates."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from sam_mito.data import prepare_dataset
from sam_mito.hub import card_template

ROOT = Path(__file__).resolve().parents[1]


def test_push_to_hub_uploads_the_written_folder(tmp_path):
    with (
        mock.patch("huggingface_hub.HfApi.create_repo") as create,
        mock.patch("huggingface_hub.HfApi.upload_folder") as upload,
    ):
        prepare_dataset(tmp_path / "ds", synthetic_shape=(4, 256, 256), seed=0, push_to_hub="me/mito-patches")
    create.assert_called_once_with("me/mito-patches", repo_type="dataset", exist_ok=True)
    kwargs = upload.call_args.kwargs
    assert kwargs["repo_id"] == "me/mito-patches" and kwargs["repo_type"] == "dataset"
    staged = Path(kwargs["folder_path"])
    assert (staged / "README.md").exists()
    names = sorted(p.name for p in (staged / "data").iterdir())
    assert [re.sub("-[0-9a-f]{16}[.]", ".", name) for name in names] == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert kwargs["delete_patterns"] == ["data/*.parquet"]  # drops an earlier push's fingerprinted files


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
        "import importlib.util, sam_mito, sam_mito.hub as h; print(importlib.util.find_spec('hub_cards')); "
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
