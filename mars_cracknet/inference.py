"""Forward passes of any size: padding to a multiple of 32 (the tiles and their blend are
``shared.engine``'s, called from :mod:`mars_cracknet.predict`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MULTIPLE = 32


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


@torch.no_grad()
def predict_tensor(model: torch.nn.Module, x: torch.Tensor, precision: str | bool = "fp32"
                   ) -> torch.Tensor:
    """Probabilities (N, C, H, W) for a batch of any size (padded, then cropped back);
    ``precision``: auto, fp32, bf16 or a resolved name (the old ``amp`` bool: True = bf16),
    through ``shared.torch_runtime``'s one autocast rule."""
    from shared.torch_runtime import precision_for

    xp, h, w = pad_to_multiple(x)
    with precision_for(precision, x.device).autocast():
        logits = model(xp)
    return torch.sigmoid(logits.float())[..., :h, :w]
