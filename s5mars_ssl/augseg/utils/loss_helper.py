"""Supervised OHEM cross-entropy and the soft-to-hard consistency loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OhemCrossEntropy(nn.Module):
    """Online hard example mining CE: average over pixels whose target probability is at most
    ``max(thresh, p_k)``, where ``p_k`` is the ``min_kept``-th smallest target probability
    (so at least ``min_kept`` pixels are kept). Pixels labelled ``ignore_index`` never count."""

    def __init__(self, thresh: float = 0.7, min_kept: int = 100000, ignore_index: int = 255):
        super().__init__()
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pixel_loss = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index,
                                     reduction="none").flatten()
        valid = target.flatten() != self.ignore_index
        n_valid = int(valid.sum())
        if n_valid == 0:
            return logits.sum() * 0.0
        with torch.no_grad():
            prob = torch.exp(-pixel_loss)  # softmax probability of the target class
            thresh = self.thresh
            if self.min_kept > 0:
                k = min(n_valid, self.min_kept)
                kth = torch.kthvalue(prob[valid], k).values.item()
                thresh = max(thresh, kth)
            keep = valid & (prob <= thresh)
        return pixel_loss[keep].sum() / keep.sum().clamp(min=1)


def soft_to_hard_masks(conf: torch.Tensor, valid: torch.Tensor, tau_hard: float,
                       tau_soft: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels for the hard term (conf >= tau_hard) and for the soft term (conf < tau_soft)."""
    return valid & (conf >= tau_hard), valid & (conf < tau_soft)


def hard_ce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CE against hard pseudo-labels on ``mask`` pixels, averaged over *all* pixels of the batch
    (the original sets the other targets to ignore and takes the mean over every pixel)."""
    loss = F.cross_entropy(logits.float(), target.clamp(max=logits.shape[1] - 1),
                           reduction="none")
    return (loss * mask).sum() / mask.numel()


def soft_ce(logits: torch.Tensor, teacher_prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CE against the teacher's distribution, summed over ``mask`` pixels / (their count + 1),
    the original's normalisation."""
    logp = F.log_softmax(logits.float(), dim=1)
    loss = -(teacher_prob.float() * logp).sum(dim=1)
    return (loss * mask).sum() / (mask.sum() + 1.0)


def unsupervised_loss(logits: torch.Tensor, target: torch.Tensor, conf: torch.Tensor,
                      prob: torch.Tensor, valid: torch.Tensor, cfg: dict
                      ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Hard and soft unsupervised terms from the config's ``semi`` section.

    With soft-to-hard on: hard CE where conf >= ``tau_hard`` and soft CE where conf <
    ``tau_soft``. Off: hard CE where conf >= ``conf_thresh`` (plain mean teacher) and no soft term.
    Returns ``(hard, soft, stats)``.
    """
    s2h = cfg.get("soft_to_hard", {})
    if s2h.get("enabled", False):
        hard_m, soft_m = soft_to_hard_masks(conf, valid, s2h["tau_hard"], s2h["tau_soft"])
        soft = soft_ce(logits, prob, soft_m)
    else:
        hard_m = valid & (conf >= cfg.get("conf_thresh", 0.95))
        soft_m = torch.zeros_like(hard_m)
        soft = logits.sum() * 0.0
    hard = hard_ce(logits, target, hard_m)
    n = valid.sum().clamp(min=1).float()
    stats = {"hard_ratio": float(hard_m.sum() / n), "soft_ratio": float(soft_m.sum() / n)}
    return hard, soft, stats
