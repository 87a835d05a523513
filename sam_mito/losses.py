"""Dice + binary cross-entropy on mask logits, the loss of the SAM fine-tuning recipe."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DiceCELoss(nn.Module):
    """Soft Dice (squared denominator) on sigmoid probabilities plus BCE on logits.

    Matches ``monai.losses.DiceCELoss(sigmoid=True, squared_pred=True, reduction="mean")`` for
    single-channel masks: the Dice term is computed per sample and channel over the spatial axes,
    ``1 - (2 * sum(p * g) + eps) / (sum(p^2) + sum(g^2) + eps)`` with ``eps = 1e-5``, then averaged;
    the cross-entropy term is the mean binary cross-entropy over all pixels.

    Parameters
    ----------
    dice_weight, ce_weight : float
        Weights of the two terms.
    """

    def __init__(self, *, dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for ``logits`` and a same-shaped {0, 1} ``target`` of shape ``(B, C, H, W)``."""
        if logits.shape != target.shape:
            raise ValueError(
                f"DiceCELoss: logits shape {tuple(logits.shape)} != target shape {tuple(target.shape)}"
            )
        target = target.to(logits.dtype)
        probs = torch.sigmoid(logits)
        spatial = tuple(range(2, logits.dim()))
        intersection = (probs * target).sum(spatial)
        denominator = (probs * probs).sum(spatial) + (target * target).sum(spatial)
        dice = 1.0 - (2.0 * intersection + self.smooth) / (denominator + self.smooth)
        ce = F.binary_cross_entropy_with_logits(logits, target)
        return self.dice_weight * dice.mean() + self.ce_weight * ce
