"""A tiny SAM that predicts no foreground anywhere, as a model that learned nothing would."""

import torch

from sam_mito.defaults import TINY_BASE
from sam_mito.models.loading import load_sam


def save_blind_model(folder):
    """Save the tiny base with its mask hypernetworks' output layers zeroed, and return ``folder``.

    Every mask logit is then exactly 0: probability 0.5, never above the 0.5 threshold, so every
    pixel of every patch is background, whatever the prompt.
    """
    model, processor = load_sam(TINY_BASE)
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.zero_()
            mlp.proj_out.bias.zero_()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
