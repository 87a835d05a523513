"""From volumes to a prepared dataset: box prompts, 256x256 patches, the dataset folder and its card, synthetic EM."""
