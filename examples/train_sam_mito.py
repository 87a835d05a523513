#!/usr/bin/env python
"""Fine-tune SAM's mask decoder on prepared mitochondria patches.

    accelerate launch examples/train_sam_mito.py examples/configs/epfl_vit_base.yaml
    python examples/train_sam_mito.py --dataset epfl-patches --output_dir sam-mito-epfl --max_steps 1000

Arguments come from a YAML or JSON file, the command line, or both (flags override the file);
every field of ``sam_mito.training.SamMitoConfig``, and so of ``transformers.TrainingArguments``,
is accepted.
"""

import logging

from sam_mito.training import parse_config, train


def main() -> None:
    config = parse_config()
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=config.get_process_log_level()
    )
    # The recipe: load the base SAM, freeze everything but the mask decoder, encode the patches
    # once, train with Dice + cross-entropy and Adam, evaluate on validation, save the model with
    # its processor and card, and push to the Hub when --push_to_hub is set.
    metrics = train(config)
    logging.getLogger("train_sam_mito").info("final metrics: %s", metrics)


if __name__ == "__main__":
    main()
