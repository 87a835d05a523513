"""Checks of a training run before any work: its output folder (refuse, resume or empty) and its step count."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from sam_mito.defaults import TINY_BASE
from sam_mito.errors import SamMitoError
from sam_mito.hub.cards import TRAINING_CONFIG
from sam_mito.models.loading import tiny_base_path
from sam_mito.training.config import SamMitoConfig

logger = logging.getLogger(__name__)

__all__ = ["check_train_size", "prepare_output_dir"]


def _checkpoints(folder: Path) -> list[str]:
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    found = [p.name for p in folder.iterdir() if p.is_dir() and pattern.match(p.name)]
    return sorted(found, key=lambda name: int(pattern.match(name).group(1)))


def _local_inputs(config: SamMitoConfig) -> dict[str, Path]:
    inputs = {}
    model = str(tiny_base_path()) if config.model_name_or_path == TINY_BASE else config.model_name_or_path
    for name, value in (("model_name_or_path", model), ("dataset", config.dataset)):
        if value is not None and Path(value).exists():
            inputs[name] = Path(value).resolve()
    return inputs


def prepare_output_dir(config: SamMitoConfig) -> str | None:
    """Check ``output_dir`` before any work; return the checkpoint to resume from, if any.

    An ``output_dir`` holding files (an earlier run's ``checkpoint-*`` folders or model, or anything
    else) is refused unless the run resumes (``resume_from_checkpoint``: a checkpoint folder, or
    ``true`` for the last one in ``output_dir``, found with
    ``transformers.trainer_utils.get_last_checkpoint``) or ``empty_output_dir`` is set, which
    empties it (on the main process) when it is an earlier sam-mito training run's folder (it, or
    one of its checkpoints, holds ``training_config.json``): a folder sam-mito did not write is
    never emptied. An ``output_dir`` that is, or lies inside, the base model's or the dataset's
    folder is always refused, and so is emptying one that holds them. Nothing is created.

    Parameters
    ----------
    config : SamMitoConfig
        ``output_dir``, ``resume_from_checkpoint``, ``empty_output_dir`` and the inputs.

    Returns
    -------
    str or None
        The checkpoint folder to pass to ``Trainer.train(resume_from_checkpoint=...)``.
    """
    out = Path(config.output_dir)
    target = out.resolve()
    for name, path in _local_inputs(config).items():
        if target == path or path in target.parents:
            raise SamMitoError(
                f"output_dir {out}: is or lies inside the {name} folder {path}; expected a folder of its own"
            )
        if config.empty_output_dir and target in path.parents:
            raise SamMitoError(
                f"empty_output_dir: output_dir {out} holds the {name} folder {path}, which emptying "
                "it would delete; choose another output_dir"
            )
    if out.exists() and not out.is_dir():
        raise SamMitoError(f"output_dir {out}: exists and is not a folder")
    resume = config.resume_from_checkpoint
    resume = ("true" if resume else None) if isinstance(resume, bool) else resume
    if resume is not None and str(resume).lower() != "false":
        if config.empty_output_dir:
            raise SamMitoError(
                "resume_from_checkpoint and empty_output_dir together: emptying output_dir would "
                "delete the checkpoints to resume from; give one of them"
            )
        if str(resume).lower() == "true":
            last = get_last_checkpoint(str(out)) if out.is_dir() else None
            if last is None:
                raise SamMitoError(
                    f"resume_from_checkpoint true: output_dir {out} holds no {PREFIX_CHECKPOINT_DIR}-* folder"
                )
            logger.info("resuming from %s, the last checkpoint in %s", last, out)
            return last
        if not (Path(resume) / "trainer_state.json").is_file():
            raise SamMitoError(
                f"resume_from_checkpoint {resume}: not a checkpoint (no trainer_state.json); expected a "
                f"{PREFIX_CHECKPOINT_DIR}-N folder of an earlier run, or true for the last one in output_dir"
            )
        return str(resume)
    existing = sorted(out.iterdir()) if out.is_dir() else []
    checkpoints = _checkpoints(out) if existing else []
    found = ", ".join(checkpoints or [p.name for p in existing][:5])
    if existing and not config.empty_output_dir:
        raise SamMitoError(
            f"output_dir {out} holds {'checkpoints' if checkpoints else 'files'} of another run ({found}): "
            "pass --resume-from-checkpoint true (or a checkpoint folder) to resume, "
            "or --empty-output-dir to empty it"
        )
    if existing and not any((out / name / TRAINING_CONFIG).is_file() for name in ("", *checkpoints)):
        raise SamMitoError(
            f"empty_output_dir: output_dir {out} holds files sam-mito's training did not write ({found}; no "
            f"{TRAINING_CONFIG}), which are never deleted; choose another output_dir"
        )
    if existing and config.should_save:
        for path in existing:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        logger.warning("empty_output_dir: emptied %s (%d entries)", out, len(existing))
    return None


def check_train_size(config: SamMitoConfig, rows: int) -> None:
    """Refuse a train split that gives zero steps: fewer rows than one batch, dropped by ``dataloader_drop_last``.

    Parameters
    ----------
    config : SamMitoConfig
        Batch size, process count, ``dataloader_drop_last`` and ``train_split``.
    rows : int
        Rows of the train split.
    """
    per_step = config.per_device_train_batch_size * config.world_size
    if config.dataloader_drop_last and rows < per_step:
        raise SamMitoError(
            f"train split '{config.train_split}' has {rows} rows, fewer than one batch of {per_step} "
            "(per_device_train_batch_size x processes) with dataloader_drop_last: zero training steps"
        )
