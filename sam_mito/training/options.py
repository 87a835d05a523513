"""The settings ``sam-mito train`` adds to ``TrainingArguments``, and the defaults it changes there.

Plain dataclasses that import nothing heavy: :class:`~sam_mito.training.config.SamMitoConfig`
combines them with ``transformers.TrainingArguments``, and ``sam-mito train --help`` lists them,
in the :data:`GROUPS`, without importing transformers. Each field's metadata holds its ``help``
and, where the values are limited, its ``choices`` (``HfArgumentParser`` passes both to argparse).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sam_mito.defaults import (
    DEFAULT_MODEL,
    ENCODE_BATCH_SIZE,
    MASK_OUTPUTS,
    PRECISIONS,
    TRAIN_MODES,
)

#: The fields of each option group, in the order ``sam-mito train --help`` shows them.
GROUPS = {
    "model and data": ("model_name_or_path", "dataset", "train_split", "eval_split"),
    "prompts": ("prompt_mode", "box_jitter", "max_instances", "point_objects", "background_points"),
    "loss": ("dice_weight", "ce_weight", "iou_weight", "mask_outputs", "multimask_weight", "point_weight"),
    "embedding cache and encoder": (
        "embedding_cache",
        "embedding_cache_dir",
        "precision",
        "encode_batch_size",
    ),
    "output folder": ("empty_output_dir", "overwrite_output_dir"),
    "TrainingArguments defaults sam-mito changes": (
        "learning_rate",
        "weight_decay",
        "remove_unused_columns",
        "label_names",
        "ddp_find_unused_parameters",
    ),
}

#: The emptying of ``output_dir`` was called ``overwrite_output_dir`` before; refused by that name.
RENAMED = {"overwrite_output_dir": "empty_output_dir"}


def _option(default, help: str, **metadata):
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(repr=False)
class SamMitoOptions:
    """The fields of decoder-only SAM fine-tuning that ``TrainingArguments`` lacks."""

    model_name_or_path: str = _option(
        DEFAULT_MODEL, "SAM to fine-tune: Hub id, local folder, or sam-mito/tiny-base."
    )
    dataset: str | None = _option(None, "Folder or Hub id made by `sam-mito prepare`.")
    train_split: str = _option("train", "Split to train on.")
    eval_split: str | None = _option("validation", "Split for validation Dice/IoU.")
    prompt_mode: str = _option(
        "union",
        "Box prompts: union (all foreground), instance (one per object), tile (whole patch).",
        choices=TRAIN_MODES,
    )
    box_jitter: int = _option(20, "Move each box side by up to this many pixels (train).")
    max_instances: int = _option(16, "instance mode: at most this many boxes per patch.")
    point_objects: int = _option(
        2, "Point prompts: objects per patch and step (chosen at random) that get a point inside them."
    )
    background_points: int = _option(
        1, "Point prompts: points on background per patch and step, each with an empty target."
    )
    dice_weight: float = _option(1.0, "Weight of the Dice term of the loss.")
    ce_weight: float = _option(1.0, "Weight of the cross-entropy term of the loss.")
    iou_weight: float = _option(
        30.0,
        "Weight of the IoU-prediction term: mean squared error between each mask's predicted IoU "
        "(iou_scores) and its real IoU with the target (0: the IoU head stays frozen). The squared error "
        "is ~0.03 against a Dice + cross-entropy of ~1, so at weight 1 the shared decoder barely learns to "
        "encode mask quality (BENCHMARKS.md compares the weights).",
    )
    mask_outputs: str = _option(
        "all",
        "Decoder outputs trained: all (the single mask and SAM's three multimask outputs, of which only "
        "the best per prompt is penalised), or single (the single mask only: the seed recipe).",
        choices=MASK_OUTPUTS,
    )
    multimask_weight: float = _option(1.0, "mask_outputs=all: weight of the three multimask outputs' loss.")
    point_weight: float = _option(
        0.0,
        "Weight of the loss on single-point prompts drawn every step: a random point inside each of "
        "point_objects objects (target: that object) and background_points on background (target: "
        "empty), as pipeline('mask-generation') prompts the model. 0: boxes only (BENCHMARKS.md "
        "section 10 measures both).",
    )
    embedding_cache: bool = _option(True, "Encode each patch once and train on cached embeddings.")
    embedding_cache_dir: str | None = _option(
        None,
        "Embedding cache folder (default $SAM_MITO_CACHE or ~/.cache/sam_mito).",
    )
    precision: str = _option(
        "auto",
        "Encoder precision when caching: auto (bf16 where the hardware has it and a first-batch check "
        "against fp32 passes), fp32 or bf16. Training itself follows bf16/fp16 as usual.",
        choices=PRECISIONS,
    )
    encode_batch_size: int = _option(
        ENCODE_BATCH_SIZE,
        "Images per encoder pass when caching (on CPU, 1 is leanest and fastest).",
    )
    empty_output_dir: bool = _option(
        False,
        "Delete an earlier run's output_dir (its checkpoints, model and logs) before training. Only a "
        "folder sam-mito's training wrote is emptied; any other non-empty folder is refused.",
    )
    overwrite_output_dir: bool = _option(
        False,
        "Refused: transformers 4 used this name for 'write into a non-empty folder', but it emptied "
        "output_dir here. Pass empty_output_dir to empty an earlier run's folder.",
    )


@dataclass(repr=False)
class ChangedDefaults:
    """``TrainingArguments`` fields whose defaults decoder fine-tuning changes.

    - ``learning_rate``: 1e-5 (was 5e-5), the SAM fine-tuning recipe's Adam step.
    - ``weight_decay``: 0.0 (unchanged, restated: with ``adamw_torch`` this is Adam).
    - ``remove_unused_columns``: False (was True): the prompt columns are not ``forward`` arguments.
    - ``label_names``: ``["targets"]`` (was None): the target masks, so evaluation reports a loss.
    - ``ddp_find_unused_parameters``: False (was None, which means True): the Trainer freezes what
      the loss does not reach, so DDP skips the per-step search for unused parameters.
    """

    learning_rate: float = _option(1e-5, "Adam learning rate.")
    weight_decay: float = _option(0.0, "Adam weight decay.")
    remove_unused_columns: bool = _option(False, "Keep prompt columns.")
    label_names: list[str] | None = field(
        default_factory=lambda: ["targets"], metadata={"help": "Label keys."}
    )
    ddp_find_unused_parameters: bool | None = _option(
        False, "DDP's search for unused parameters (not needed: every trainable one is used)."
    )
