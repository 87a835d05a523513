"""Training configuration: ``TrainingArguments`` plus the fields of decoder-only SAM fine-tuning."""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments

from sam_mito.errors import SamMitoError
from sam_mito.training.options import RENAMED, ChangedDefaults, SamMitoOptions

logger = logging.getLogger(__name__)

#: Key of ``training_config.json`` that records how the run was launched; not a setting, so
#: :func:`parse_config` skips it when that file is read back as a config.
RUN_RECORD = "run"


@dataclass(repr=False)  # keep TrainingArguments.__repr__, which masks tokens
class SamMitoConfig(ChangedDefaults, TrainingArguments, SamMitoOptions):
    """Arguments of decoder-only SAM fine-tuning; every ``TrainingArguments`` field applies too.

    The fields sam-mito adds are those of :class:`~sam_mito.training.options.SamMitoOptions`
    (listed first by ``--help``); the ``TrainingArguments`` defaults it changes, and why, are listed
    by :class:`~sam_mito.training.options.ChangedDefaults`: ``learning_rate`` 1e-5,
    ``weight_decay`` 0.0, ``remove_unused_columns`` False, ``label_names`` ``["targets"]``,
    ``ddp_find_unused_parameters`` False.

    Fields whose values are limited carry ``choices`` in their metadata; they are checked when the
    config is built, from Python or the command line alike.
    """

    def __post_init__(self) -> None:
        for old, new in RENAMED.items():
            if getattr(self, old):
                raise SamMitoError(
                    f"{old}: refused, since it would have emptied output_dir {self.output_dir} (delete every "
                    f"file in it), not just allowed writing into it as in transformers 4; pass {new} to "
                    "empty an earlier run's folder, or choose a new output_dir"
                )
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
        for name in ("point_objects", "background_points"):
            if getattr(self, name) < 0:
                raise SamMitoError(f"{name} {getattr(self, name)}: expected a count >= 0")
        for name in (
            "learning_rate",
            "weight_decay",
            "dice_weight",
            "ce_weight",
            "iou_weight",
            "multimask_weight",
            "point_weight",
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


#: Words HfArgumentParser reads as a boolean value.
_BOOLEANS = {"true", "false", "yes", "no", "t", "f", "y", "n", "1", "0"}


def _common_flags(argv: list[str]) -> list[str]:
    """``argv`` with the flags every sam-mito command shares spelled as ``TrainingArguments`` fields.

    ``--out DIR`` is ``--output_dir DIR``; ``--push-to-hub REPO`` (or ``--push_to_hub REPO``) is
    ``--push_to_hub true --hub_model_id REPO``; ``--push-to-hub`` alone or with a boolean is kept.
    """
    result: list[str] = []
    items = iter(argv)
    for item in items:
        flag, equals, value = item.partition("=")
        if flag == "--out":
            result.append("--output_dir" + equals + value)
        elif flag in ("--push-to-hub", "--push_to_hub"):
            if not equals:
                value = next(items, "")
                if not value or value.startswith("-") or value.lower() in _BOOLEANS:
                    result += [flag, value] if value else [flag]
                    continue
            if value.lower() in _BOOLEANS:
                result.append(f"{flag}={value}")
            else:
                result += ["--push_to_hub", "true", "--hub_model_id", value]
        else:
            result.append(item)
    return result


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

    argv = _common_flags(list(sys.argv[1:] if argv is None else argv))
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
