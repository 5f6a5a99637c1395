"""Forward passes of any size: padding to a multiple of 32, and overlapping blended tiles."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
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


def blend_window(size: int, floor: float = 0.05) -> np.ndarray:
    """A separable weight that is 1 in the centre and falls towards the tile edge."""
    ramp = np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5) / (size / 2)
    w1 = np.clip(ramp * 2, floor, 1.0)
    return np.outer(w1, w1).astype(np.float32)


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


def iter_tiled_probability(
    read: Callable[[int, int, int, int], np.ndarray], height: int, width: int,
    predict: Callable[[np.ndarray], np.ndarray], tile: int = 512, overlap: int = 64,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row0, prob_rows)`` strips of the blended probability map, top to bottom.

    ``read(row, col, h, w)`` returns the (h, w, 3) uint8 pixels of a window (zero beyond the
    edge); ``predict`` maps a (tile, tile, 3) uint8 array to a (tile, tile) probability map.
    Memory is bounded by one strip of ``tile`` rows of the full width, whatever the image size.
    """
    if tile % MULTIPLE:
        raise ValueError(f"tile must be a multiple of {MULTIPLE}, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap}")
    from shared.tiles import iter_windows

    stride = tile - overlap
    windows = list(iter_windows(height, width, tile, stride, edge="pad"))
    rows = sorted({win.row for win in windows})
    cols = sorted({win.col for win in windows})
    wpad = cols[-1] + tile
    weight = blend_window(tile)
    acc = np.zeros((tile, wpad), np.float32)
    wacc = np.zeros((tile, wpad), np.float32)
    emitted = 0
    for k, r in enumerate(rows):
        for c in cols:
            prob = predict(read(r, c, tile, tile))
            acc[:, c:c + tile] += prob * weight
            wacc[:, c:c + tile] += weight
        last = k == len(rows) - 1
        done = min(height, r + tile) if last else min(height, r + stride)
        n = done - emitted
        if n > 0:
            off = emitted - r
            yield emitted, acc[off:off + n, :width] / np.maximum(wacc[off:off + n, :width], 1e-6)
            emitted = done
        if not last:
            acc = np.roll(acc, -stride, axis=0)
            wacc = np.roll(wacc, -stride, axis=0)
            acc[tile - stride:] = 0
            wacc[tile - stride:] = 0
