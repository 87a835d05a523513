"""Uploads to the Hub: datasets through ``DatasetDict.push_to_hub`` plus their card, models as an allow-list."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import datasets
from huggingface_hub import CommitOperationAdd, HfApi

from .errors import SamMitoError
from .hub import CARD_DATA, RESULTS_FILE, TRAINING_CONFIG, VALIDATION_FILE, dataset_card

logger = logging.getLogger(__name__)


def push_dataset(
    dataset: datasets.DatasetDict,
    repo_id: str,
    *,
    source: str,
    patch_config: dict,
    license: dict | None = None,
    token: str | None = None,
) -> str:
    """Upload ``dataset`` with ``DatasetDict.push_to_hub``, then replace its card by sam-mito's.

    ``push_to_hub`` writes each split as ``data/<split>-*.parquet`` (removing an earlier push's
    shards of that split) and a card listing them; the card pushed next declares the same files
    and adds the source, the patching, split sizes, ``size_categories``, ``task_ids`` and licence.

    Parameters
    ----------
    dataset : datasets.DatasetDict
        The prepared splits.
    repo_id : str
        The Hub dataset, ``owner/name``; created if needed.
    source, patch_config, license
        As for :func:`dataset_card`.
    token : str, optional
        Hub token (default: the logged-in user's).

    Returns
    -------
    str
        The URL of the card's commit.
    """
    dataset.push_to_hub(repo_id, token=token)
    card = dataset_card(
        dataset,
        data_files={split: f"data/{split}-*" for split in dataset},
        source=source,
        patch_config=patch_config,
        license=license,
    )
    url = card.push_to_hub(repo_id, repo_type="dataset", token=token)
    logger.info("pushed dataset to %s", repo_id)
    return str(url)


#: Files of a model folder that a model upload sends; anything else (``checkpoint-*``,
#: ``training_args.bin``, optimizer, scheduler or RNG state, logs, caches, stray files) stays local.
MODEL_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "README.md",
    CARD_DATA,
    TRAINING_CONFIG,
    VALIDATION_FILE,
    "train_results.json",
    "all_results.json",
    RESULTS_FILE,
    "evaluation.md",
    "comparison.png",
)
_WEIGHT_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


def model_files(folder: str | Path) -> list[str]:
    """The names of the files of ``folder`` that a model upload sends (:data:`MODEL_FILES`, weight shards).

    Parameters
    ----------
    folder : str or Path
        A model folder, or a Trainer checkpoint folder.

    Returns
    -------
    list of str
        File names, sorted; files in subfolders are never sent.

    Raises
    ------
    SamMitoError
        If the folder has no ``model.safetensors`` (or sharded weights) and ``config.json``.
    """
    folder = Path(folder)
    names = sorted(path.name for path in folder.iterdir() if path.is_file()) if folder.is_dir() else []
    chosen = [name for name in names if name in MODEL_FILES or _WEIGHT_SHARD.fullmatch(name)]
    has_weights = "model.safetensors" in chosen or "model.safetensors.index.json" in chosen
    if not has_weights or "config.json" not in chosen:
        raise SamMitoError(
            f"{folder}: no model.safetensors and config.json to upload; expected a model folder "
            "written by `sam-mito train`"
        )
    return chosen


def push_model(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    create: bool = True,
    private: bool | None = None,
    commit_message: str = "Upload sam-mito model",
    revision: str | None = None,
    blocking: bool = True,
):
    """Upload the allow-listed files of a model folder (:func:`model_files`) in one commit.

    Parameters
    ----------
    folder : str or Path
        A model folder (or a Trainer checkpoint folder: only its model files go).
    repo_id : str
        The Hub model, ``owner/name``.
    token : str, optional
        Hub token (default: the logged-in user's). Never written anywhere.
    create : bool, keyword-only
        Create the repository first if it does not exist.
    private : bool, optional
        Visibility of a repository created here.
    commit_message, revision : str, optional
        The commit's message and target branch.
    blocking : bool, keyword-only
        Wait for the upload; False returns a ``Future``.

    Returns
    -------
    huggingface_hub.CommitInfo or concurrent.futures.Future
        The commit (its ``commit_url``), or a future of it.
    """
    names = model_files(folder)
    api = HfApi(token=token)
    if create:
        api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(folder) / name)) for name in names
    ]
    logger.info("uploading %s to %s: %s", folder, repo_id, ", ".join(names))
    return api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message,
        repo_type="model",
        revision=revision,
        run_as_future=not blocking,
    )
