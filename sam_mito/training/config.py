"""Training configuration: ``TrainingArguments`` plus the fields of decoder-only SAM fine-tuning."""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments

from sam_mito.data.prompts import TRAIN_MODES
from sam_mito.errors import SamMitoError
from sam_mito.features.encoding import ENCODE_BATCH_SIZE, PRECISIONS
from sam_mito.models.loading import DEFAULT_MODEL
from sam_mito.training.losses import MASK_OUTPUTS

logger = logging.getLogger(__name__)

#: Key of ``training_config.json`` that records how the run was launched; not a setting, so
#: :func:`parse_config` skips it when that file is read back as a config.
RUN_RECORD = "run"


@dataclass(repr=False)  # keep TrainingArguments.__repr__, which masks tokens
class SamMitoConfig(TrainingArguments):
    """Arguments of decoder-only SAM fine-tuning; every ``TrainingArguments`` field applies too.

    Defaults changed from ``TrainingArguments``:

    - ``learning_rate``: 1e-5 (was 5e-5), the SAM fine-tuning recipe's Adam step.
    - ``weight_decay``: 0.0 (unchanged, restated: with ``adamw_torch`` this is Adam).
    - ``remove_unused_columns``: False (was True): the prompt columns are not ``forward`` arguments.
    - ``label_names``: ``["targets"]`` (was None): the target masks, so evaluation reports a loss.
    - ``ddp_find_unused_parameters``: False (was None, which means True): the Trainer freezes what
      the loss does not reach, so DDP skips the per-step search for unused parameters.

    Fields whose values are limited carry ``choices`` in their metadata; they are checked when the
    config is built, from Python or the command line alike.
    """

    model_name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "SAM to fine-tune: Hub id, local folder, or sam-mito/tiny-base."},
    )
    dataset: str | None = field(
        default=None, metadata={"help": "Folder or Hub id made by `sam-mito prepare`."}
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default="validation", metadata={"help": "Split for validation Dice/IoU."})
    prompt_mode: str = field(
        default="union",
        metadata={
            "help": "Box prompts: union (all foreground), instance (one per object), tile (whole patch).",
            "choices": TRAIN_MODES,
        },
    )
    box_jitter: int = field(
        default=20, metadata={"help": "Move each box side by up to this many pixels (train)."}
    )
    max_instances: int = field(
        default=16, metadata={"help": "instance mode: at most this many boxes per patch."}
    )
    dice_weight: float = field(default=1.0, metadata={"help": "Weight of the Dice term of the loss."})
    ce_weight: float = field(default=1.0, metadata={"help": "Weight of the cross-entropy term of the loss."})
    iou_weight: float = field(
        default=30.0,
        metadata={
            "help": "Weight of the IoU-prediction term: mean squared error between each mask's predicted "
            "IoU (iou_scores) and its real IoU with the target (0: the IoU head stays frozen). The squared "
            "error is ~0.03 against a Dice + cross-entropy of ~1, so at weight 1 the shared decoder barely "
            "learns to encode mask quality (BENCHMARKS.md compares the weights)."
        },
    )
    mask_outputs: str = field(
        default="all",
        metadata={
            "help": "Decoder outputs trained: all (the single mask and SAM's three multimask outputs, of "
            "which only the best per prompt is penalised), or single (the single mask only: the seed recipe).",
            "choices": MASK_OUTPUTS,
        },
    )
    multimask_weight: float = field(
        default=1.0, metadata={"help": "mask_outputs=all: weight of the three multimask outputs' loss."}
    )
    embedding_cache: bool = field(
        default=True, metadata={"help": "Encode each patch once and train on cached embeddings."}
    )
    embedding_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Embedding cache folder (default $SAM_MITO_CACHE or ~/.cache/sam_mito)."},
    )
    encode_precision: str = field(
        default="auto",
        metadata={
            "help": "Encoder precision when caching: auto (bf16 where the hardware has it and a first-batch "
            "check against fp32 passes), fp32 or bf16.",
            "choices": PRECISIONS,
        },
    )
    encode_batch_size: int = field(
        default=ENCODE_BATCH_SIZE,
        metadata={"help": "Images per encoder pass when caching (on CPU, 1 is leanest and fastest)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Empty an output_dir that holds another run's files (checkpoints, model) first."},
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "Adam learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep prompt columns."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["targets"], metadata={"help": "Label keys."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "DDP's search for unused parameters (not needed: every trainable one is used)."},
    )

    def __post_init__(self) -> None:
        inherited = {spec.name for spec in fields(TrainingArguments)}
        for spec in fields(self):
            choices = spec.metadata.get("choices")
            if spec.name not in inherited and choices and getattr(self, spec.name) not in choices:
                raise SamMitoError(
                    f"{spec.name} '{getattr(self, spec.name)}': expected one of {tuple(choices)}"
                )
        if self.box_jitter < 0:
            raise SamMitoError(f"box_jitter {self.box_jitter}: expected a non-negative number of pixels")
        self._check_numbers()
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        if processes > 1 and not self.use_cpu and not _has_accelerator():
            # `accelerate launch` with a CPU config does not pass use_cpu on to the processes; without
            # it each would train alone as a single process, so they run as CPU DDP instead.
            logger.info("%d processes and no GPU: training with use_cpu=True (gloo DDP)", processes)
            self.use_cpu = True
        super().__post_init__()

    def __getstate__(self) -> dict:
        """Pickle without ``hub_token``: the Trainer saves these arguments as ``training_args.bin``."""
        return {**self.__dict__, "hub_token": None}

    def _check_numbers(self) -> None:
        """Refuse settings that cannot train, naming the field: before any data is read or encoded."""
        at_least_one = (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
        )
        for name in at_least_one + ("max_instances", "encode_batch_size"):
            if getattr(self, name) < 1:
                raise SamMitoError(f"{name} {getattr(self, name)}: expected at least 1")
        for name in (
            "learning_rate",
            "weight_decay",
            "dice_weight",
            "ce_weight",
            "iou_weight",
            "multimask_weight",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise SamMitoError(f"{name} {value}: expected a finite number >= 0")
        if self.dice_weight == 0 and self.ce_weight == 0:
            raise SamMitoError(
                "dice_weight and ce_weight are both 0: expected a positive weight for the masks"
            )
        if self.mask_outputs == "all" and self.multimask_weight == 0:
            raise SamMitoError(
                "multimask_weight 0 with mask_outputs 'all': expected a positive weight, or mask_outputs 'single'"
            )
        if self.max_steps == 0:
            raise SamMitoError(
                "max_steps 0: expected a positive number of steps, or -1 to train num_train_epochs"
            )
        if self.max_steps < 0 and not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise SamMitoError(
                f"num_train_epochs {self.num_train_epochs} with max_steps {self.max_steps}: zero training "
                "steps; expected num_train_epochs > 0 or max_steps > 0"
            )


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


class _ConfigParser(HfArgumentParser):
    """``HfArgumentParser`` whose errors (unknown choice, bad number) raise instead of exiting."""

    def error(self, message: str):
        raise SamMitoError(f"{message}; see `sam-mito train --help`")


def parse_config(argv: list[str] | None = None) -> SamMitoConfig:
    """Build a :class:`SamMitoConfig` from ``[CONFIG.yaml|CONFIG.json] [--field value ...]``.

    Values in the file become defaults; flags after it override them. Every setting is checked
    here, before any data is read: a bad value, an unknown flag or a stray argument raises.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    SamMitoConfig

    Raises
    ------
    SamMitoError
        Naming the file, flag or field and what was expected.
    """
    import yaml

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _ConfigParser(SamMitoConfig)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        path = Path(argv.pop(0))
        try:
            values = yaml.safe_load(path.read_text())  # JSON is YAML too
        except (OSError, yaml.YAMLError) as err:
            raise SamMitoError(f"{path}: cannot read config ({err})") from err
        if not isinstance(values, dict):
            raise SamMitoError(f"{path}: expected a mapping of field names to values")
        values.pop(RUN_RECORD, None)  # training_config.json read back: the record is no setting
        unknown = sorted(set(values) - {f.name for f in fields(SamMitoConfig)})
        if unknown:
            raise SamMitoError(f"{path}: unknown field(s) {unknown}; see `sam-mito train --help`")
        parser.set_defaults(**values)
    config, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        raise SamMitoError(
            f"unrecognized arguments: {' '.join(remaining)} (expected an optional CONFIG.yaml|json first, "
            "then --field value flags; see `sam-mito train --help`)"
        )
    return config
