"""Write datasets and models as Hub-ready folders with cards, atomically, and push them."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import datasets
import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData, HfApi

from .errors import SamMitoError

logger = logging.getLogger(__name__)

EPFL_CITATION = """@article{lucchi2012supervoxel,
  title   = {Supervoxel-Based Segmentation of Mitochondria in EM Image Stacks With Learned Shape Features},
  author  = {Lucchi, Aur{\\'e}lien and Smith, Kevin and Achanta, Radhakrishna and Knott, Graham and Fua, Pascal},
  journal = {IEEE Transactions on Medical Imaging},
  volume  = {31},
  number  = {2},
  pages   = {474--486},
  year    = {2012}
}"""


def card_template(name: str) -> str:
    """Text of a card template shipped in the ``hub_cards`` package (found after any install)."""
    return resources.files("hub_cards").joinpath(name).read_text(encoding="utf-8")


def check_output_dir(out_dir: str | Path, *, overwrite: bool) -> Path:
    """Refuse a non-empty existing ``out_dir`` unless ``overwrite``; call before any long work."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise SamMitoError(
            f"{out_dir}: output folder exists and is not empty (pass --overwrite to replace it)"
        )
    return out_dir


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir`` that becomes ``out_dir`` only if the block succeeds.

    A failure inside the block removes the temporary folder and leaves ``out_dir`` untouched.
    """
    out_dir = check_output_dir(out_dir, overwrite=overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, retired / out_dir.name)
        shutil.rmtree(retired, ignore_errors=True)
    os.replace(staging, out_dir)


def dataset_card(dataset: datasets.DatasetDict, *, source: str, patch_config: dict) -> DatasetCard:
    """Render the dataset card: YAML configs/splits/features plus source, patching, counts and citation."""
    splits = list(dataset)
    counts = {split: len(dataset[split]) for split in splits}
    foreground = {
        split: float(np.mean(dataset[split]["foreground_fraction"])) if counts[split] else 0.0
        for split in splits
    }
    card_data = DatasetCardData(
        license="other",
        task_categories=["image-segmentation"],
        tags=["electron-microscopy", "mitochondria", "segment-anything", "sam-mito"],
        pretty_name="Mitochondria EM patches with box prompts",
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in splits],
            }
        ],
        dataset_info={"features": dataset[splits[0]].features._to_yaml_list()},
    )
    return DatasetCard.from_template(
        card_data,
        template_str=card_template("dataset_card.md"),
        source=source,
        patch=patch_config,
        counts=counts,
        foreground=foreground,
        citation=EPFL_CITATION,
    )


def save_dataset(
    dataset: datasets.DatasetDict,
    out_dir: str | Path,
    *,
    source: str,
    patch_config: dict,
    overwrite: bool = False,
) -> Path:
    """Write ``dataset`` as parquet shards plus a README.md card that ``datasets.load_dataset`` reads.

    The folder is written to a temporary sibling and renamed into place, so a failed run leaves no
    half-written dataset behind.
    """
    with atomic_directory(out_dir, overwrite=overwrite) as staging:
        (staging / "data").mkdir()
        for split, part in dataset.items():
            part.to_parquet(str(staging / "data" / f"{split}-00000-of-00001.parquet"))
        dataset_card(dataset, source=source, patch_config=patch_config).save(staging / "README.md")
    logger.info("dataset written to %s", out_dir)
    return Path(out_dir)


def push_folder(folder: str | Path, repo_id: str, *, repo_type: str, token: str | None = None) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; returns the commit URL."""
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type)
    logger.info("pushed %s to %s", folder, repo_id)
    return str(getattr(info, "commit_url", info))
