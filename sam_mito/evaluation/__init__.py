"""Scores: Dice/IoU metrics, base vs fine-tuned comparison and its figure, whole-volume scoring."""
