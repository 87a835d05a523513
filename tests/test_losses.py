"""DiceCE against hand-computed values and against MONAI's reference implementation."""

import math

import pytest
import torch

from sam_mito.losses import DiceCELoss


def test_matches_monai_dicece_on_random_inputs():
    monai_losses = pytest.importorskip("monai.losses")
    reference = monai_losses.DiceCELoss(sigmoid=True, squared_pred=True, reduction="mean")
    generator = torch.Generator().manual_seed(0)
    for shape in [(2, 1, 16, 16), (5, 1, 8, 12)]:
        logits = torch.randn(shape, generator=generator) * 3
        target = (torch.rand(shape, generator=generator) > 0.7).float()
        assert torch.allclose(DiceCELoss()(logits, target), reference(logits, target), atol=1e-5)


def test_hand_computed_value():
    logits = torch.zeros(1, 1, 1, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 0.0]]]])
    dice = 1 - (2 * 0.5 + 1e-5) / (0.5 + 1.0 + 1e-5)
    ce = math.log(2)
    assert DiceCELoss()(logits, target).item() == pytest.approx(dice + ce, abs=1e-6)
    assert DiceCELoss(dice_weight=0.0)(logits, target).item() == pytest.approx(ce, abs=1e-6)


def test_perfect_prediction_has_near_zero_loss():
    target = torch.zeros(1, 1, 4, 4)
    target[..., 1:3, 1:3] = 1
    logits = (target * 2 - 1) * 50
    assert DiceCELoss()(logits, target).item() < 1e-4


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"logits shape \(1, 1, 4, 4\) != target shape \(1, 1, 8, 8\)"):
        DiceCELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 8, 8))
