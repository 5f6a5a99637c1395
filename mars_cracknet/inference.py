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
def predict_tensor(model: torch.nn.Module, x: torch.Tensor, amp: bool = False) -> torch.Tensor:
    """Probabilities (N, C, H, W) for a batch of any size (padded, then cropped back)."""
    xp, h, w = pad_to_multiple(x)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(xp)
    return torch.sigmoid(logits.float())[..., :h, :w]


def pick_device(pref: str = "auto", local_rank: int | None = None) -> torch.device:
    """The one device picker: ``auto`` is CUDA when available, else the CPU; under torchrun
    (``local_rank``) each process takes its own GPU. A device that is not there is a
    ``UserError`` (one line, exit code 2)."""
    from shared.cli import check_torch_device

    check_torch_device(pref)
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda") and local_rank is not None:
        pref = f"cuda:{local_rank}"
    device = torch.device(pref)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device
