"""The offline end-to-end demo: synthetic (or real) EM → dataset → fine-tuned tiny SAM → scores."""

from __future__ import annotations

import logging
from pathlib import Path

from .data import PatchConfig, prepare_dataset
from .evaluation import compare
from .hub import check_output_dir, write_model_card
from .modeling import TINY_BASE, freeze_for_decoder_training, load_sam
from .training import SamMitoConfig, train

logger = logging.getLogger(__name__)


def run_demo(
    out_dir: str | Path, *, data: str | Path | None = None, steps: int = 300, overwrite: bool = False
) -> dict:
    """Prepare data, fine-tune the packaged tiny base's mask decoder, and compare base vs fine-tuned.

    ``data`` is an EPFL-layout folder (``training.tif`` + ``training_groundtruth.tif``); without it
    a synthetic volume pair is generated. Everything is written under ``out_dir``.
    """
    out_dir = check_output_dir(out_dir, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset_dir = out_dir / "dataset"
    if data is None:
        prepare_dataset(dataset_dir, synthetic_shape=(24, 512, 512), seed=0, overwrite=True)
    else:
        data = Path(data)
        prepare_dataset(
            dataset_dir,
            images=data / "training.tif",
            masks=data / "training_groundtruth.tif",
            config=PatchConfig(validation_fraction=0.15, test_fraction=0.25),
            overwrite=True,
        )
    model_dir = out_dir / "model"
    config = SamMitoConfig(
        output_dir=str(model_dir),
        model_name_or_path=TINY_BASE,
        dataset=str(dataset_dir),
        cache_dir=str(out_dir / "embedding_cache"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-4,
        box_jitter=10,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=25,
        use_cpu=True,
        report_to="none",
        seed=0,
    )
    train(config)
    report = compare(
        TINY_BASE, str(model_dir), dataset_dir, cache_dir=config.cache_dir, out=model_dir / "evaluation.json"
    )
    (model_dir / "evaluation.md").write_text(report["table"] + "\n")
    finetuned, _ = load_sam(str(model_dir))
    freeze_for_decoder_training(finetuned)
    write_model_card(model_dir, config=config, model=finetuned)  # now with the comparison
    return report
