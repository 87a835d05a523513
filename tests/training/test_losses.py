"""DiceCE against hand-computed values and MONAI's reference; SAM's decoder loss on hand-built masks."""

import math

import pytest
import torch

from sam_mito.training.losses import DiceCELoss, MaskDecoderLoss, mask_iou


def test_matches_monai_dicece_on_random_inputs():
    monai_losses = pytest.importorskip("monai.losses")
    reference = monai_losses.DiceCELoss(sigmoid=True, squared_pred=True, reduction="mean")
    generator = torch.Generator().manual_seed(0)
    for shape in [(2, 1, 16, 16), (5, 1, 8, 12)]:
        logits = torch.randn(shape, generator=generator) * 3
        target = (torch.rand(shape, generator=generator) > 0.7).float()
        assert torch.allclose(DiceCELoss()(logits, target), reference(logits, target), atol=1e-5)


def _two_by_two():
    """Logits 0, ln 3, -ln 3, 0: probabilities 0.5, 0.75, 0.25, 0.5 against the top row as target."""
    logits = torch.tensor([[[[0.0, math.log(3)], [-math.log(3), 0.0]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # Dice: sum(p * g) = 0.5 + 0.75 = 1.25; sum(p^2) = 0.25 + 0.5625 + 0.0625 + 0.25 = 1.125; sum(g^2) = 2
    #       1 - 2 * 1.25 / (1.125 + 2) = 1 - 0.8 = 0.2 (the 1e-5 smoothing moves it by under 1e-6)
    # BCE:  -ln 0.5, -ln 0.75, -ln 0.75, -ln 0.5 -> mean (ln 2 + ln 4/3) / 2 = ln(8/3) / 2 = 0.4904
    return logits, target, 0.2, math.log(8 / 3) / 2


def test_hand_computed_dice_plus_bce_on_a_2x2_mask():
    logits, target, dice, ce = _two_by_two()
    assert DiceCELoss()(logits, target).item() == pytest.approx(dice + ce, abs=1e-5)  # 0.6904


def test_each_weight_scales_its_own_term():
    logits, target, dice, ce = _two_by_two()
    assert DiceCELoss(dice_weight=0.0)(logits, target).item() == pytest.approx(ce, abs=1e-5)
    assert DiceCELoss(ce_weight=0.0)(logits, target).item() == pytest.approx(dice, abs=1e-5)
    weighted = DiceCELoss(dice_weight=2.0, ce_weight=0.5)(logits, target).item()
    assert weighted == pytest.approx(2.0 * dice + 0.5 * ce, abs=1e-5)  # 0.4 + 0.2452


def test_perfect_prediction_has_near_zero_loss():
    target = torch.zeros(1, 1, 4, 4)
    target[..., 1:3, 1:3] = 1
    logits = (target * 2 - 1) * 50
    assert DiceCELoss()(logits, target).item() < 1e-4


def test_the_opposite_prediction_costs_all_of_dice_plus_the_logit_margin():
    target = torch.zeros(1, 1, 4, 4)
    target[..., 1:3, 1:3] = 1
    opposite = (1 - 2 * target) * 50  # confidently wrong on every pixel
    # Dice: no overlap, 1 - 1e-5 / (12 + 4 + 1e-5) = 1; BCE: -ln sigmoid(-50) = 50 (to 1e-21) per pixel
    assert DiceCELoss()(opposite, target).item() == pytest.approx(51.0, abs=1e-4)
    # p = 0.5 everywhere lies between perfect (0) and opposite (51): Dice 1 - 2 * 2 / (4 + 4) = 0.5, BCE ln 2
    undecided = DiceCELoss()(torch.zeros(1, 1, 4, 4), target).item()
    assert undecided == pytest.approx(0.5 + math.log(2), abs=1e-5)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"logits shape \(1, 1, 4, 4\) != target shape \(1, 1, 8, 8\)"):
        DiceCELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 8, 8))


def test_per_mask_losses_average_to_the_loss():
    logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 0.0]], [[1.0, 1.0]]]])
    per_mask = DiceCELoss().per_mask(logits, target)
    first = 1 - (2 * 0.5 + 1e-5) / (0.5 + 1.0 + 1e-5) + math.log(2)
    second = 1 - (2 * 1.0 + 1e-5) / (0.5 + 2.0 + 1e-5) + math.log(2)
    assert per_mask.shape == (1, 2)
    assert per_mask[0].tolist() == pytest.approx([first, second], abs=1e-6)
    assert DiceCELoss()(logits, target).item() == pytest.approx((first + second) / 2, abs=1e-6)


def test_mask_iou_thresholds_logits_at_zero():
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    logits = torch.tensor([[3.0, -1.0], [0.5, -2.0]])  # predicted: (0, 0) and (1, 0)
    assert mask_iou(logits, target).item() == pytest.approx(1 / 3)  # 1 shared of 3 pixels
    assert mask_iou(-torch.ones(2, 2), target).item() == 0.0  # nothing predicted
    assert mask_iou(-torch.ones(2, 2), torch.zeros(2, 2)).item() == 1.0  # nothing to find, nothing found
    assert not mask_iou(logits.requires_grad_(), target).requires_grad


def _three_masks():
    """One prompt, three 2x2 masks: the second is the target, the others miss half or all of it."""
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    big = 50.0
    masks = torch.stack(
        [
            torch.tensor([[big, -big], [-big, -big]]),  # real IoU 1/2
            torch.tensor([[big, big], [-big, -big]]),  # real IoU 1
            torch.tensor([[-big, -big], [big, big]]),  # real IoU 0
        ]
    )[None]
    return masks, target


def test_only_the_best_of_three_masks_is_penalised():
    masks, target = _three_masks()
    masks.requires_grad_()
    loss = MaskDecoderLoss(iou_weight=0.0)(masks, torch.zeros(1, 3), target)
    assert loss.item() < 1e-4  # the perfect second mask alone counts
    loss.backward()
    assert masks.grad[0, 0].abs().sum() == 0 and masks.grad[0, 2].abs().sum() == 0


def test_iou_head_is_pulled_to_each_masks_real_iou():
    masks, target = _three_masks()
    scores = torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True)
    loss = MaskDecoderLoss(dice_weight=1.0, ce_weight=1.0, iou_weight=2.0)(masks, scores, target)
    mse = ((0.5 - 0.5) ** 2 + (0.5 - 1.0) ** 2 + (0.5 - 0.0) ** 2) / 3
    assert loss.item() == pytest.approx(2.0 * mse, abs=1e-4)
    loss.backward()  # d/ds of 2 * mean((s - iou)^2) = 4 (s - iou) / 3
    assert scores.grad[0].tolist() == pytest.approx([0.0, 4 * -0.5 / 3, 4 * 0.5 / 3], abs=1e-6)


def test_one_mask_without_iou_term_is_dicece():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 8, 8, generator=generator)
    target = (torch.rand(3, 8, 8, generator=generator) > 0.5).float()
    loss = MaskDecoderLoss(iou_weight=0.0)(logits, torch.zeros(3, 1), target)
    assert torch.allclose(loss, DiceCELoss()(logits, target[:, None]))


def test_iou_scores_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"iou_scores shape \(2, 1\) != \(2, 3\)"):
        MaskDecoderLoss()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1), torch.zeros(2, 4, 4))


def test_the_loss_and_the_training_config_default_to_the_documented_iou_weight():
    from sam_mito.training.config import SamMitoConfig

    config_default = SamMitoConfig.__dataclass_fields__["iou_weight"].default
    assert MaskDecoderLoss().iou_weight == config_default == 30.0  # README: `--iou_weight`, 30 by default
