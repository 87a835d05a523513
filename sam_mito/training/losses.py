"""Losses of decoder fine-tuning: Dice + binary cross-entropy on mask logits, and SAM's decoder loss."""

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

    def per_mask(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of each mask: ``(B, C)`` for ``logits`` and {0, 1} ``target`` of shape ``(B, C, H, W)``.

        Its mean over all masks equals :meth:`forward`.
        """
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
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(spatial)
        return self.dice_weight * dice + self.ce_weight * ce

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for ``logits`` and a same-shaped {0, 1} ``target`` of shape ``(B, C, H, W)``."""
        return self.per_mask(logits, target).mean()


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of each thresholded mask (``logits > 0``) with its target; 1 where both are empty.

    Parameters
    ----------
    logits : torch.Tensor
        ``(..., H, W)`` mask logits.
    target : torch.Tensor
        ``(..., H, W)`` {0, 1} masks, broadcastable to ``logits``.

    Returns
    -------
    torch.Tensor
        ``(...)`` float IoUs, without gradient.
    """
    with torch.no_grad():
        predicted, truth = logits > 0, target > 0.5
        intersection = (predicted & truth).sum((-2, -1)).float()
        union = (predicted | truth).sum((-2, -1)).float()
        return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


class MaskDecoderLoss(nn.Module):
    """SAM's decoder loss for one group of outputs: the best mask's DiceCE plus the IoU head's error.

    For each prompt with ``M`` predicted masks, only the mask with the lowest DiceCE is penalised
    (SAM's rule for its three ambiguity-aware masks; with ``M = 1`` this is plain DiceCE), and
    the predicted IoU of every mask is pulled towards that mask's real IoU with its target (mean
    squared error, the real IoU taken as a constant).

    Parameters
    ----------
    dice_weight, ce_weight : float
        Weights of the Dice and cross-entropy terms of the mask loss.
    iou_weight : float
        Weight of the IoU-prediction term; 30 (``SamMitoConfig``'s default): its squared error is
        small beside the mask loss, and at weight 1 the decoder barely learns to encode mask quality.
    """

    def __init__(self, *, dice_weight: float = 1.0, ce_weight: float = 1.0, iou_weight: float = 30.0) -> None:
        super().__init__()
        self.mask_loss = DiceCELoss(dice_weight=dice_weight, ce_weight=ce_weight)
        self.iou_weight = iou_weight

    def forward(self, logits: torch.Tensor, iou_scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for ``logits`` ``(N, M, H, W)``, predicted IoUs ``(N, M)`` and targets ``(N, H, W)``."""
        if iou_scores.shape != logits.shape[:2]:
            raise ValueError(
                f"MaskDecoderLoss: iou_scores shape {tuple(iou_scores.shape)} != {tuple(logits.shape[:2])}, "
                "the (prompts, masks) axes of the logits"
            )
        target = target[:, None].expand_as(logits)
        best = self.mask_loss.per_mask(logits, target).amin(dim=1).mean()
        if self.iou_weight == 0:
            return best
        real = mask_iou(logits, target).to(iou_scores.dtype)
        return best + self.iou_weight * F.mse_loss(iou_scores, real)
