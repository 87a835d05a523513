"""Write datasets and models as Hub-ready folders with cards, atomically, and push them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import datasets
import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, HfApi, ModelCard, ModelCardData

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


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that is renamed to ``path`` only if the block succeeds.

    A failure inside the block removes the temporary file and leaves ``path`` untouched.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


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
#: Written by :func:`sam_mito.evaluation.compare` (or the Trainer's validation metrics, before it).
RESULTS_FILE = "eval_results.json"


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not Path(name).exists()


def _eval_results(rows: list[dict], dataset: str) -> list[EvalResult]:
    return [
        EvalResult(
            task_type="image-segmentation",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=row.get("split"),
            metric_type=metric,
            metric_name=f"{METRIC_NAMES[metric]} ({row['mode']} prompts)",
            metric_value=round(float(row[metric]), 4),
        )
        for row in rows
        if row["model"] == "finetuned"
        for metric in METRIC_NAMES
        if metric in row
    ]


def _results(output_dir: Path) -> tuple[list[dict], str]:
    """Fine-tuned results rows and a Markdown summary, from ``sam-mito evaluate`` or the Trainer."""
    found = _read_json(output_dir / RESULTS_FILE)
    if "results" in found:  # sam-mito evaluate's report
        return found["results"], found["table"]
    validation = {k.removeprefix("eval_"): v for k, v in found.items()}
    if "dice" not in validation:
        return [], ""
    row = {"model": "finetuned", "mode": "validation", **validation}
    return [row], f"Validation: Dice {validation['dice']:.4f}, IoU {validation['iou']:.4f}"


def write_model_card(output_dir: str | Path, *, model, config=None, model_name: str | None = None) -> Path:
    """Render hub_cards/model_card.md for a fine-tuned model into ``output_dir/README.md``.

    Training settings come from ``config`` or, without it, from the folder's
    ``training_config.json``. Metrics come from ``eval_results.json``: ``sam-mito evaluate``'s
    comparison when present, otherwise the Trainer's validation metrics.
    """
    from .modeling import TINY_BASE, TRAINABLE_PREFIX, tiny_base_path

    output_dir = Path(output_dir)
    settings = (
        json.loads(config.to_json_string())
        if config is not None
        else _read_json(output_dir / TRAINING_CONFIG)
    )
    if not settings:
        raise SamMitoError(
            f"{output_dir}: no {TRAINING_CONFIG}; expected a folder written by `sam-mito train`"
        )
    rows, results_table = _results(output_dir)
    dataset = str(settings["dataset"])
    base = str(settings["model_name_or_path"])
    demo_base = base in (TINY_BASE, str(tiny_base_path()))
    card_data = ModelCardData(
        base_model=base if _is_hub_id(base) and not demo_base else None,
        datasets=[dataset] if _is_hub_id(dataset) else None,
        library_name="transformers",
        pipeline_tag="mask-generation",
        license="apache-2.0",
        tags=["segment-anything", "mitochondria", "electron-microscopy", "sam-mito"],
        model_name=model_name or output_dir.name,
        eval_results=_eval_results(rows, dataset) or None,
    )
    counts = {name: p.numel() for name, p in model.named_parameters()}
    trainable = sum(n for name, n in counts.items() if name.startswith(TRAINABLE_PREFIX))
    total = sum(counts.values())
    steps = "max_steps" if settings["max_steps"] > 0 else "num_train_epochs"
    hyperparameters = {
        key: settings[key]
        for key in (
            "learning_rate",
            "weight_decay",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            steps,
            "lr_scheduler_type",
            "embedding_cache",
            "encode_precision",
            "seed",
        )
    }
    card = ModelCard.from_template(
        card_data,
        template_str=card_template("model_card.md"),
        model_name=model_name or output_dir.name,
        demo_base=demo_base,
        base_model=base if not demo_base else f"{TINY_BASE} (packaged demonstration base)",
        dataset=dataset,
        train_split=settings["train_split"],
        prompt_mode=settings["prompt_mode"],
        box_jitter=settings["box_jitter"],
        trainable=f"{trainable:,}",
        total=f"{total:,}",
        dice_weight=settings["dice_weight"],
        ce_weight=settings["ce_weight"],
        hyperparameters=hyperparameters,
        results_table=results_table,
        figure="comparison.png" if (output_dir / "comparison.png").exists() else None,
        repo_or_path=settings.get("hub_model_id") or str(output_dir),
    )
    path = output_dir / "README.md"
    card.save(path)
    return path


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
