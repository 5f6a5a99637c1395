"""AugIN: exchange per-image, per-channel statistics between images of a batch.

Each image is normalised by its own channel mean and standard deviation (over H, W) and
re-coloured with those of a partner image: ``mode="both"`` uses the partner's mean and std (the
paper's choice), ``"mean"`` only shifts to the partner's mean (std unchanged), ``"std"`` only
rescales to the partner's std (mean unchanged). Partners are a random permutation of the batch
(``torch.randperm``, as the original: an image may meet itself).

The paper uses AugIN; the public full-method script of the original imports it but never calls
it (``train_semi_mars_mix_distill.py`` line 19), so the published numbers may have been
produced without it. The paper profile keeps it on (the paper's text).
"""

from __future__ import annotations

import torch

MODES = ("mean", "std", "both")


def partner_permutation(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation of the batch (fixed points allowed, as the original)."""
    return torch.randperm(batch, generator=generator)


def augin(x: torch.Tensor, mode: str = "both", perm: torch.Tensor | None = None,
          prob: float = 1.0, eps: float = 1e-5,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply AugIN to a (B, C, H, W) batch; each image is changed with probability ``prob``."""
    if mode not in MODES:
        raise ValueError(f"AugIN mode must be one of {MODES}, got {mode!r}")
    b = x.shape[0]
    if perm is None:
        perm = partner_permutation(b, generator)
    mu = x.mean(dim=(2, 3), keepdim=True)
    sd = x.std(dim=(2, 3), keepdim=True, unbiased=False) + eps
    mu_p, sd_p = mu[perm], sd[perm]
    if mode == "both":
        out = (x - mu) / sd * sd_p + mu_p
    elif mode == "mean":
        out = x - mu + mu_p
    else:
        out = (x - mu) / sd * sd_p + mu
    if prob >= 1.0:
        return out
    keep = torch.rand(b, generator=generator) >= prob
    return torch.where(keep.view(b, 1, 1, 1).to(x.device), x, out)
