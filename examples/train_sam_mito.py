#!/usr/bin/env python
"""Fine-tune SAM's mask decoder on prepared mitochondria patches.

    accelerate launch examples/train_sam_mito.py examples/configs/epfl_vit_base.yaml
    python examples/train_sam_mito.py --dataset epfl-patches --output_dir sam-mito-epfl --max_steps 1000

Arguments come from a YAML or JSON file, the command line, or both (flags override the file);
every field of ``sam_mito.SamMitoConfig``, and so of ``transformers.TrainingArguments``, is
accepted. ``sam_mito.train(config)`` runs the same recipe in one call.
"""

import logging
import sys

from transformers import set_seed

from sam_mito import SamMitoError, SamMitoTrainer, load_patches, parse_config, prepare_output_dir

logger = logging.getLogger("train_sam_mito")


def main() -> None:
    # 1. Parse: a config file and/or flags; bad values, unknown flags and stray arguments stop here.
    config = parse_config()
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=config.get_process_log_level()
    )
    # 2. The output folder: another run's checkpoints are refused unless resuming
    #    (--resume_from_checkpoint PATH|true) or emptied (--overwrite_output_dir).
    checkpoint = prepare_output_dir(config)
    set_seed(config.seed)

    # 3. Load the patches made by `sam-mito prepare` (a folder or a Hub dataset id): this is
    #    `datasets.load_dataset`, plus a check that the splits and columns are there.
    patches = load_patches(config.dataset)

    # 4. The trainer loads the base SAM, freezes all but the mask decoder and encodes each patch once.
    trainer = SamMitoTrainer(
        model=config.model_name_or_path,
        args=config,
        train_dataset=patches[config.train_split],
        eval_dataset=patches[config.eval_split] if config.eval_split else None,
    )

    # 5. Train (a non-finite loss stops it, naming the step), then save weights, processor and settings.
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    # 6. Validation Dice / IoU.
    if config.eval_split:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    # 7. The model card, then the Hub.
    trainer.create_model_card()
    if config.push_to_hub:
        trainer.push_to_hub()
    logger.info("model written to %s", config.output_dir)

    # 8. Let every process finish before the process group is destroyed (several processes).
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    try:
        main()
    except SamMitoError as err:
        print(f"train_sam_mito.py: error: {err}", file=sys.stderr)
        sys.exit(2)
