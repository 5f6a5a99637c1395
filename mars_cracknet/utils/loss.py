"""Losses on logits (numerically stable: the sigmoid lives inside, no log(0)).

The paper's loss is ``(1 - w) * BCE + w * Dice`` on sigmoid outputs (``w`` = ``--ratio``,
default 0.5). Targets may be soft (the auto-encoder pre-training uses the image as target).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1.0


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = EPS) -> torch.Tensor:
    """1 - soft Dice, computed per sample and channel, then averaged."""
    prob = torch.sigmoid(logits.float())
    target = target.float()
    dims = tuple(range(2, prob.ndim))
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = EPS) -> torch.Tensor:
    """1 - soft Jaccard (IoU), per sample and channel, averaged."""
    prob = torch.sigmoid(logits.float())
    target = target.float()
    dims = tuple(range(2, prob.ndim))
    inter = (prob * target).sum(dims)
    union = prob.sum(dims) + target.sum(dims) - inter
    return (1.0 - (inter + smooth) / (union + smooth)).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: float | None = 0.25) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017) from logits."""
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    prob = torch.sigmoid(logits)
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = bce * (1 - p_t).pow(gamma)
    if alpha is not None:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.mean()


class BCEDiceLoss(nn.Module):
    """``(1 - ratio) * BCE + ratio * Dice``, both from logits."""

    def __init__(self, ratio: float = 0.5):
        super().__init__()
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {ratio}")
        self.ratio = ratio

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return (1 - self.ratio) * bce + self.ratio * soft_dice_loss(logits, target)


class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, self.gamma, self.alpha)


class IoULoss(nn.Module):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_iou_loss(logits, target)


def build_loss(name: str, ratio: float = 0.5) -> nn.Module:
    """``bce_dice`` (the paper's), ``focal`` or ``iou``."""
    if name == "bce_dice":
        return BCEDiceLoss(ratio)
    if name == "focal":
        return FocalLoss()
    if name == "iou":
        return IoULoss()
    raise ValueError(f"unknown loss {name!r}; expected bce_dice, focal or iou")
