"""Uploads to the Hub: datasets through ``DatasetDict.push_to_hub`` plus their card, models as an allow-list."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi
from transformers.trainer_utils import HubStrategy
from transformers.utils import PushInProgress

from sam_mito.data.dataset_folder import dataset_card
from sam_mito.data.patches import load_patches
from sam_mito.errors import SamMitoError
from sam_mito.hub.cards import CARD_DATA, INFERENCE_CONFIG, RESULTS_FILE, TRAINING_CONFIG, VALIDATION_FILE

logger = logging.getLogger(__name__)


def push_dataset(folder: str | Path, repo_id: str, *, token: str | None = None) -> str:
    """Upload a prepared dataset folder with ``DatasetDict.push_to_hub``, then replace its card by sam-mito's.

    ``push_to_hub`` writes each split as ``data/<split>-*.parquet`` (removing an earlier push's
    shards of that split) and a card listing them; the card pushed next is the folder's own card
    re-rendered for those files: the source, the patching, split sizes, ``size_categories``,
    ``task_ids`` and licence.

    Parameters
    ----------
    folder : str or pathlib.Path
        A folder written by :func:`sam_mito.data.patches.prepare_dataset`.
    repo_id : str
        The Hub dataset, ``owner/name``; created if needed.
    token : str, optional
        Hub token (default: the logged-in user's).

    Returns
    -------
    str
        The URL of the card's commit.
    """
    dataset = load_patches(folder)
    metadata = DatasetCard.load(Path(folder) / "README.md").data.to_dict()
    record = metadata.get("sam_mito")
    if not isinstance(record, dict) or not {"source", "patch_config"} <= set(record):
        raise SamMitoError(f"{Path(folder) / 'README.md'}: not a card written by sam-mito prepare")
    dataset.push_to_hub(repo_id, token=token)
    card = dataset_card(
        dataset,
        data_files={split: f"data/{split}-*" for split in dataset},
        source=record["source"],
        patch_config=record["patch_config"],
        license={key: metadata[key] for key in ("license", "license_name") if key in metadata},
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
    INFERENCE_CONFIG,
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


class AllowListedPushes:
    """Trainer mixin: pushes send the allow-list :data:`MODEL_FILES`, never the whole output folder."""

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Save, write the card, and upload only the model's files (:func:`sam_mito.hub.uploads.push_model`).

        ``Trainer.push_to_hub`` uploads the whole output folder but ``checkpoint-*``; this sends
        the allow-list :data:`sam_mito.hub.uploads.MODEL_FILES`: never ``training_args.bin``, optimizer,
        scheduler or RNG state, logs, caches or stray files. Arguments as for ``Trainer.push_to_hub``.
        """
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        model_name = kwargs.pop("model_name", None) or self.hub_model_id.split("/")[-1]
        self.create_model_card(model_name=model_name, **kwargs)
        self._finish_current_push()
        return push_model(
            self.args.output_dir,
            self.hub_model_id,
            token=token,
            create=False,
            commit_message=commit_message or "End of training",
            revision=revision or self.args.hub_revision,
            blocking=blocking,
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Upload a checkpoint's model files in the background (``hub_strategy="every_save"``).

        Only :func:`sam_mito.hub.uploads.model_files` of the checkpoint go: never its optimizer,
        scheduler or RNG state, nor ``training_args.bin``.
        """
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        job = push_model(
            checkpoint_folder,
            self.hub_model_id,
            token=self.args.hub_token,
            create=False,
            commit_message=f"Training in progress, step {self.state.global_step}",
            revision=self.args.hub_revision,
            blocking=False,
        )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress([job])
        else:
            self.push_in_progress.jobs.append(job)
