"""Fine-tuning the mask decoder: the config, prompt rows, the loss, many processes, the Trainer and its recipe."""
