"""SGD with a poly learning-rate decay applied every iteration."""

from __future__ import annotations

import torch


def poly_lr(base_lr: float, it: int, total: int, power: float = 0.9,
            stop: int | None = None) -> float:
    """``base_lr * (1 - it / total) ** power`` (it counted from 0); from iteration ``stop`` on
    the rate stays at its value there (the original steps the schedule only while epoch < 200
    of 240: the last 40 epochs run at 0.01 * (1/6) ** 0.9 = 2.0e-3)."""
    if stop is not None:
        it = min(it, int(stop))
    return base_lr * (1.0 - min(it, total) / max(total, 1)) ** power


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg.get("momentum", 0.9),
                           weight_decay=cfg.get("weight_decay", 5e-4))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
