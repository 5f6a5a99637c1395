import math

import pytest
import torch

from mars_cracknet.utils.loss import (
    BCEDiceLoss,
    build_loss,
    focal_loss,
    soft_dice_loss,
    soft_iou_loss,
)
from mars_cracknet.utils.metrics import image_scores


def test_bce_dice_hand_made():
    # logits 0 -> p = 0.5 everywhere; target half ones
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    bce = math.log(2)
    dice = 1 - (2 * 1.0 + 1) / (2.0 + 2.0 + 1)  # inter = 1, sums = 2 + 2, smooth 1
    for w in (0.0, 0.3, 0.5, 1.0):
        got = BCEDiceLoss(w)(logits, target).item()
        assert got == pytest.approx((1 - w) * bce + w * dice, rel=1e-6)


def test_perfect_prediction_is_near_zero_and_stable():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    logits = (target * 2 - 1) * 1e4  # huge logits: no log(0), no nan
    for name in ("bce_dice", "focal", "iou"):
        value = build_loss(name)(logits, target)
        assert torch.isfinite(value)
        assert value.item() < 1e-3
    wrong = -logits
    assert torch.isfinite(BCEDiceLoss()(wrong, target))
    assert BCEDiceLoss()(wrong, target).item() > 1.0


def test_iou_and_dice_values():
    logits = torch.full((1, 1, 1, 4), 1e4)  # p = 1 everywhere
    target = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    assert soft_iou_loss(logits, target).item() == pytest.approx(1 - (2 + 1) / (4 + 1))
    assert soft_dice_loss(logits, target).item() == pytest.approx(1 - (4 + 1) / (6 + 1))


def test_focal_hand_made():
    logits = torch.zeros(1, 1, 1, 1)
    target = torch.ones(1, 1, 1, 1)
    expected = 0.25 * 0.5**2 * math.log(2)
    assert focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_loss_gradients_finite():
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    BCEDiceLoss(0.5)(logits, target).backward()
    assert torch.isfinite(logits.grad).all()


def test_bad_ratio_and_name():
    with pytest.raises(ValueError):
        BCEDiceLoss(1.5)
    with pytest.raises(ValueError):
        build_loss("hinge")


def test_metrics_hand_made():
    pred = torch.tensor([[1, 1, 0, 0]]).bool().numpy()
    gt = torch.tensor([[1, 0, 1, 0]]).bool().numpy()
    s = image_scores(pred, gt)
    assert s == {"precision": 0.5, "recall": 0.5, "dice": 0.5, "jaccard": 1 / 3}
