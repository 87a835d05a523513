"""Hub cards rendered from typed data, and uploads: dataset folders and model folders."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

import datasets
import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, HfApi, ModelCard, ModelCardData

from .errors import SamMitoError
from .files import atomic_directory, atomic_file
from .prompts import GROUND_TRUTH_MODES

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
    """Text of a card template shipped as ``sam_mito.hub_cards`` (the repository's ``hub_cards/``)."""
    return resources.files("sam_mito.hub_cards").joinpath(name).read_text(encoding="utf-8")


def dataset_card(
    dataset: datasets.DatasetDict, *, data_files: dict[str, str], source: str, patch_config: dict
) -> DatasetCard:
    """Render the dataset card: YAML configs/splits/features plus source, patching, counts and citation.

    Parameters
    ----------
    dataset : datasets.DatasetDict
        The splits written to the folder.
    data_files : dict of str to str
        Each split's parquet file, relative to the folder. The card's ``configs`` list these exact
        names, not a glob, so they enter the hash ``datasets`` caches a local folder under.
    source : str
        Markdown describing where the volumes came from.
    patch_config : dict
        The :class:`sam_mito.data.PatchConfig` fields used.

    Returns
    -------
    huggingface_hub.DatasetCard
        The card, with ``dataset_info`` recording the features and each split's size (``datasets``
        checks the number of rows when it builds its cache).
    """
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
                "data_files": [{"split": split, "path": data_files[split]} for split in splits],
            }
        ],
        dataset_info={
            "features": dataset[splits[0]].features._to_yaml_list(),
            "splits": [
                {"name": split, "num_bytes": dataset[split].data.nbytes, "num_examples": counts[split]}
                for split in splits
            ],
        },
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


def _write_fingerprinted_parquet(part: datasets.Dataset, data_dir: Path, split: str) -> str:
    """Write one split as ``<split>-00000-of-00001-<sha256 prefix>.parquet``; return its file name.

    The Hub's sharded name (which it maps to a split even without a card) followed by a fingerprint
    of the file's bytes: any change of content gives a new name.
    """
    written = data_dir / f"{split}.parquet"
    part.to_parquet(str(written))
    digest = hashlib.sha256()
    with open(written, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    name = f"{split}-00000-of-00001-{digest.hexdigest()[:16]}.parquet"
    os.replace(written, data_dir / name)
    return name


def save_dataset(
    dataset: datasets.DatasetDict,
    out_dir: str | Path,
    *,
    source: str,
    patch_config: dict,
    overwrite: bool = False,
) -> Path:
    """Write ``dataset`` as parquet shards plus a README.md card that ``datasets.load_dataset`` reads.

    Each split is one file ``data/<split>-00000-of-00001-<fingerprint>.parquet`` whose exact name
    the card lists. For a local folder, ``datasets`` caches under the folder's base name and a hash
    of the card's ``configs`` and ``dataset_info``, not of the files; the fingerprint in the names
    makes that hash change whenever the content does, so a re-prepared folder, or another folder
    of the same name, never loads stale patches.

    The folder is written to a temporary sibling and renamed into place, so a failed run leaves no
    half-written dataset behind.

    Parameters
    ----------
    dataset : datasets.DatasetDict
        The splits to write.
    out_dir : str or pathlib.Path
        The dataset folder.
    source : str
        Markdown describing where the volumes came from, for the card.
    patch_config : dict
        The :class:`sam_mito.data.PatchConfig` fields used, for the card.
    overwrite : bool
        Replace an existing non-empty ``out_dir``.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    with atomic_directory(out_dir, overwrite=overwrite) as staging:
        (staging / "data").mkdir()
        data_files = {
            split: f"data/{_write_fingerprinted_parquet(part, staging / 'data', split)}"
            for split, part in dataset.items()
        }
        card = dataset_card(dataset, data_files=data_files, source=source, patch_config=patch_config)
        card.save(staging / "README.md")
    logger.info("dataset written to %s", out_dir)
    return Path(out_dir)


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str,
    token: str | None = None,
    delete_patterns: list[str] | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; returns the commit URL.

    Files of the repository that match ``delete_patterns`` and are not in ``folder`` are deleted in
    the same commit (for instance a dataset's parquet files from an earlier push, whose
    fingerprinted names differ from the new ones).
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, delete_patterns=delete_patterns
    )
    logger.info("pushed %s to %s", folder, repo_id)
    return str(getattr(info, "commit_url", info))


METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "pooled_iou": "pooled IoU"}
#: Written by :func:`sam_mito.training.train` beside the model: the run's settings, token-free JSON.
TRAINING_CONFIG = "training_config.json"
#: Written beside the model: what its card shows (:class:`ModelCardInfo`).
CARD_DATA = "card_data.json"
#: The Trainer's validation metrics (its own schema).
VALIDATION_FILE = "eval_results.json"
#: Written by :func:`sam_mito.evaluation.compare`: base vs fine-tuned in every prompt mode.
RESULTS_FILE = "comparison.json"


def public_name(name_or_path: str) -> str:
    """A Hub id as it is; a local path as its folder name (cards never show local paths)."""
    return name_or_path if is_hub_id(name_or_path) else Path(name_or_path).name


def is_hub_id(name: str) -> bool:
    """Whether ``name`` looks like ``owner/repo`` and is not a local path."""
    return name.count("/") == 1 and not Path(name).exists() and not name.startswith((".", "/"))


@dataclass
class ModelCardInfo:
    """Everything a fine-tuned model's card shows, collected while training and evaluating.

    Saved as ``card_data.json`` beside the weights, so ``sam-mito evaluate`` adds its results and
    re-renders the card without reloading the model.

    Attributes
    ----------
    base_model, dataset : str
        Hub ids, or folder names for local paths.
    train_split, prompt_mode : str
        What the decoder was trained on.
    box_jitter : int
        Training box jitter in pixels.
    loss_weights : dict
        Weight of each loss term.
    trainable_parameters, total_parameters : int
        Parameter counts after freezing.
    hyperparameters : dict
        The settings shown in the card's table.
    repo_or_path : str
        What the card's usage snippet loads.
    demo_base : bool
        The base is the packaged tiny demonstration SAM.
    mask_outputs : str
        Decoder outputs trained: ``all`` (single mask and the three multimask outputs) or
        ``single``; it decides how the card's usage snippet calls the model.
    results : list of dict
        Fine-tuned scores, rows with ``mode``, ``split`` and :data:`METRIC_NAMES` keys.
    results_table : str
        Markdown shown under "Evaluation".
    figure : str or None
        File name of the comparison figure in the model folder.
    """

    base_model: str
    dataset: str
    train_split: str
    prompt_mode: str
    box_jitter: int
    loss_weights: dict
    trainable_parameters: int
    total_parameters: int
    hyperparameters: dict
    repo_or_path: str
    demo_base: bool = False
    mask_outputs: str = "single"
    results: list[dict] = field(default_factory=list)
    results_table: str = ""
    figure: str | None = None

    def save(self, folder: str | Path) -> None:
        """Write ``card_data.json`` into ``folder``."""
        with atomic_file(Path(folder) / CARD_DATA) as partial:
            partial.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> ModelCardInfo:
        """Read ``card_data.json`` from a model folder written by ``sam-mito train``."""
        path = Path(folder) / CARD_DATA
        if not path.exists():
            raise SamMitoError(f"{folder}: no {CARD_DATA}; expected a folder written by `sam-mito train`")
        values = json.loads(path.read_text())
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def add_validation(self, metrics: dict) -> None:
        """Show the Trainer's validation metrics (``eval_*``), unless a comparison is shown."""
        scores = {k.removeprefix("eval_"): v for k, v in metrics.items()}
        if "dice" not in scores or any(row["mode"] != "validation" for row in self.results):
            return
        self.results = [{"mode": "validation", "split": "validation", **scores}]
        self.results_table = f"Validation: Dice {scores['dice']:.4f}, IoU {scores['iou']:.4f}"

    def add_comparison(self, report: dict, *, figure: str | None) -> None:
        """Show a :func:`sam_mito.evaluation.compare` report: the fine-tuned rows and the table."""
        self.results = [row for row in report["results"] if row["model"] == "finetuned"]
        self.results_table = report["table"]
        self.figure = figure

    def card(self, model_name: str) -> ModelCard:
        """Render ``hub_cards/model_card.md``."""
        card_data = ModelCardData(
            base_model=self.base_model if is_hub_id(self.base_model) and not self.demo_base else None,
            datasets=[self.dataset] if is_hub_id(self.dataset) else None,
            library_name="transformers",
            license="apache-2.0",
            tags=["segment-anything", "mitochondria", "electron-microscopy", "sam-mito"],
            model_name=model_name,
            eval_results=self._eval_results() or None,
        )
        return ModelCard.from_template(
            card_data,
            template_str=card_template("model_card.md"),
            model_name=model_name,
            info=self,
            trainable=f"{self.trainable_parameters:,}",
            total=f"{self.total_parameters:,}",
        )

    def _eval_results(self) -> list[EvalResult]:
        return [
            EvalResult(
                task_type="image-segmentation",
                dataset_type=self.dataset,
                dataset_name=self.dataset,
                dataset_split=row.get("split"),
                metric_type=metric,
                metric_name=f"{METRIC_NAMES[metric]} ({row['mode']} prompts"
                + (", from ground truth)" if row["mode"] in GROUND_TRUTH_MODES else ")"),
                metric_value=round(float(row[metric]), 4),
            )
            for row in self.results
            for metric in METRIC_NAMES
            if metric in row
        ]

    def write(self, folder: str | Path, *, model_name: str | None = None) -> Path:
        """Save the data and render the card into ``folder/README.md``; returns the card's path."""
        folder = Path(folder)
        self.save(folder)
        path = folder / "README.md"
        with atomic_file(path) as partial:
            self.card(model_name or folder.name).save(partial)
        return path
