"""Mean-teacher EMA: teacher = decay * teacher + (1 - decay) * student, BN buffers included."""

from __future__ import annotations

import torch
from torch import nn


def ema_decay(iteration: int, max_decay: float = 0.996, epoch: int = 1) -> float:
    """0 during the first epoch (``epoch == 0``: the teacher is a copy of the student), then
    ``min(1 - 1 / (iteration + 1), max_decay)`` with the global iteration, as the original."""
    if epoch < 1:
        return 0.0
    return min(1.0 - 1.0 / (iteration + 1), max_decay)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, iteration: int,
               max_decay: float = 0.996, epoch: int = 1) -> float:
    """Update ``teacher`` in place from ``student``; returns the decay used.

    Float buffers (BN running mean/var) follow the same rule; integer buffers
    (``num_batches_tracked``) are copied.
    """
    d = ema_decay(iteration, max_decay, epoch)
    s_params = dict(student.named_parameters())
    for name, t in teacher.named_parameters():
        t.mul_(d).add_(s_params[name].detach(), alpha=1.0 - d)
    s_bufs = dict(student.named_buffers())
    for name, t in teacher.named_buffers():
        s = s_bufs[name]
        if t.dtype.is_floating_point:
            t.mul_(d).add_(s, alpha=1.0 - d)
        else:
            t.copy_(s)
    return d
