"""Model cards rendered from typed data, card templates, and what shared files may hold."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from sam_mito.data.prompts import GROUND_TRUTH_MODES
from sam_mito.defaults import MASK_GENERATION_SETTINGS
from sam_mito.errors import SamMitoError
from sam_mito.files import atomic_file
from sam_mito.hub_cards import card_template
from sam_mito.models.families import FAMILIES
from sam_mito.paths import is_hub_id, public_name

logger = logging.getLogger(__name__)


#: Licence of datasets prepared from the user's own volumes: that of the source data.
METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "pooled_iou": "pooled IoU"}
#: Whole-volume scores (``sam-mito score``) shown in cards and their model-index.
VOLUME_METRICS = {
    "foreground_iou": "foreground IoU (voxel-wise)",
    "foreground_dice": "foreground Dice (voxel-wise)",
    "instance_precision": "instance precision (IoU >= 0.5)",
    "instance_recall": "instance recall (IoU >= 0.5)",
    "instance_f1": "instance F1 (IoU >= 0.5)",
    "matched_iou": "mean IoU of matched instances",
}
#: Written by :func:`sam_mito.training.trainer.train` beside the model: the run's settings, token-free JSON.
TRAINING_CONFIG = "training_config.json"
#: Written beside the model: what its card shows (:class:`ModelCardInfo`).
CARD_DATA = "card_data.json"
#: The Trainer's validation metrics (its own schema).
VALIDATION_FILE = "eval_results.json"
#: Written by :meth:`sam_mito.inference.segmenter.Segmenter.save_pretrained`: tiling, prompts, post-processing.
INFERENCE_CONFIG = "inference_config.json"
#: Written by :func:`sam_mito.evaluation.compare.compare`: base vs fine-tuned in every prompt mode.
RESULTS_FILE = "comparison.json"


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
    unreached : list of str
        Decoder modules frozen because the loss does not reach them.
    run : dict
        How training was launched (:func:`sam_mito.training.processes.run_record`): ``num_processes``,
        ``per_device_train_batch_size``, ``gradient_accumulation_steps``,
        ``effective_train_batch_size``, ``mixed_precision``; empty when unknown.
    hyperparameters : dict
        The settings shown in the card's table.
    repo_or_path : str
        What the card's usage snippet loads.
    demo_base : bool
        The base is the packaged tiny demonstration SAM.
    family : str
        The base's family, a key of :data:`sam_mito.models.families.FAMILIES` (``sam``, ``sam_hq``, ``sam2``).
    mask_outputs : str
        Decoder outputs trained: ``all`` (single mask and the three multimask outputs) or
        ``single``; it decides how the card's usage snippet calls the model.
    results : list of dict
        Fine-tuned scores, rows with ``mode``, ``split`` and :data:`METRIC_NAMES` keys.
    results_table : str
        Markdown shown under "Evaluation".
    figure : str or None
        File name of the comparison figure in the model folder.
    volume_results : list of dict
        Prompt-free whole-volume scores from ``sam-mito score --model``: one row per scored volume
        with ``volume`` (its file name) and :data:`VOLUME_METRICS` keys.
    point_weight : float
        Weight of the single-point prompts' loss in training (0: boxes only).
    mask_generation : dict
        The settings the card's ``pipeline("mask-generation")`` call passes
        (:data:`sam_mito.defaults.MASK_GENERATION_SETTINGS`).
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
    family: str = "sam"
    unreached: list[str] = field(default_factory=list)
    run: dict = field(default_factory=dict)
    mask_outputs: str = "single"
    results: list[dict] = field(default_factory=list)
    results_table: str = ""
    figure: str | None = None
    volume_results: list[dict] = field(default_factory=list)
    point_weight: float = 0.0
    mask_generation: dict = field(default_factory=lambda: dict(MASK_GENERATION_SETTINGS))

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
        """Show a :func:`sam_mito.evaluation.compare.compare` report: the fine-tuned rows and the table."""
        self.results = [row for row in report["results"] if row["model"] == "finetuned"]
        self.results_table = report["table"]
        self.figure = figure

    def add_volume_scores(self, scores: dict, *, volume: str) -> None:
        """Show :func:`sam_mito.evaluation.scoring.score_volumes` scores of a prompt-free prediction of ``volume``.

        A row for the same volume name is replaced; the per-slice figures are left out of the card.
        """
        row = {"volume": public_name(volume), **{key: scores[key] for key in VOLUME_METRICS}}
        self.volume_results = [r for r in self.volume_results if r["volume"] != row["volume"]] + [row]

    def card(self, model_name: str) -> ModelCard:
        """Render ``hub_cards/model_card.md``."""
        card_data = ModelCardData(
            base_model=self.base_model if is_hub_id(self.base_model) and not self.demo_base else None,
            datasets=[self.dataset] if is_hub_id(self.dataset) else None,
            library_name="transformers",
            pipeline_tag="mask-generation",
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
            family=FAMILIES[self.family],
            trainable=f"{self.trainable_parameters:,}",
            total=f"{self.total_parameters:,}",
        )

    def _eval_results(self) -> list[EvalResult]:
        volume_rows = [
            EvalResult(
                task_type="image-segmentation",
                dataset_type=row["volume"],
                dataset_name=row["volume"],
                metric_type=metric,
                metric_name=f"{name} (prompt-free, whole volume)",
                metric_value=round(float(row[metric]), 4),
            )
            for row in self.volume_results
            for metric, name in VOLUME_METRICS.items()
            if row.get(metric) is not None
        ]
        return volume_rows + [
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
