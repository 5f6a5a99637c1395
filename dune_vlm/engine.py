"""Shared pieces of training and evaluation: text embeddings, checkpoints, evaluation loop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dune_vlm.models.fusion import build_model
from dune_vlm.utils.metrics import SegMetric
from shared.atomic import atomic_path


class UserError(ValueError):
    """A mistake in the command line or inputs: reported as a one-line error."""


def load_text_embeds(path: str | os.PathLike, num_classes: int | None = None) -> np.ndarray:
    """A float32 (C, D) array from ``.npy``; checks shape and finiteness, names the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: text embedding file not found (make it with "
                        "python -m dune_vlm.make_text_embeds)")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.ndim != 2:
        raise UserError(f"{path}: expected a (classes, dim) array, got shape {arr.shape}")
    if num_classes is not None and arr.shape[0] != num_classes:
        raise UserError(f"{path}: has {arr.shape[0]} rows but the model has {num_classes} "
                        "classes")
    if not np.isfinite(arr).all():
        raise UserError(f"{path}: contains NaN/Inf")
    return arr.astype(np.float32)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"bad --device {name!r} ({exc})") from None


def model_from_spec(spec: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a model from a checkpoint's spec (``arch``: optional fusion size overrides)."""
    arch = {k: tuple(v) if isinstance(v, list) else v for k, v in (spec.get("arch") or {}).items()}
    try:
        return build_model(spec["name"], num_classes=spec["num_classes"],
                           text_dim=spec.get("text_dim", 512), in_chans=spec.get("in_chans", 64),
                           **arch)
    except TypeError as exc:
        raise UserError(f"bad model architecture {arch} ({exc})") from None


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") \
            from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_spec" not in ckpt:
        raise UserError(f"{path}: not a dune_vlm checkpoint (no model weights/spec)")
    return ckpt


def load_model_for_inference(weights: str | os.PathLike, text_embed_path=None,
                             device: torch.device | str = "cpu"):
    """(model in eval mode, text tensor or None, checkpoint dict)."""
    ckpt = load_checkpoint(weights)
    spec = ckpt["model_spec"]
    model = model_from_spec(spec)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    text = None
    if getattr(model, "uses_text", False):
        if text_embed_path is not None:
            arr = load_text_embeds(text_embed_path, spec["num_classes"])
            if arr.shape[1] != spec.get("text_dim"):
                raise UserError(f"{text_embed_path}: {arr.shape[1]}-d embeddings but the model "
                                f"was trained with text_dim={spec.get('text_dim')}")
            text = torch.from_numpy(arr)
        elif "text_embeds" in ckpt:
            text = ckpt["text_embeds"].float()
        else:
            raise UserError(f"{weights}: checkpoint holds no text embeddings; pass "
                            "--text_embed_path")
        text = text.to(device)
    return model, text, ckpt


def collate(batch):
    imgs = torch.from_numpy(np.stack([b[0] for b in batch]))
    labels = torch.from_numpy(np.stack([b[1] for b in batch]))
    idx = torch.as_tensor([b[2] for b in batch])
    return imgs, labels, idx


@torch.no_grad()
def evaluate(model, dataset: Dataset, text, device, num_classes: int, batch_size: int = 8,
             workers: int = 0, regions: list[str] | None = None, amp: bool = False,
             sampler=None, progress: bool = False) -> dict[str, Any]:
    """Metrics over a dataset: overall, plus per region when ``regions`` (one per item) given.

    Returns ``{"overall": SegMetric, "regions": {name: SegMetric}}`` (call ``.compute()``).
    """
    from tqdm import tqdm

    model.eval()
    overall = SegMetric(num_classes)
    per_region: dict[str, SegMetric] = {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate, sampler=sampler)
    for imgs, labels, idx in tqdm(loader, desc="eval", unit="batch", disable=not progress,
                                  leave=False):
        imgs = imgs.to(device)
        with torch.autocast(device_type=device.type, dtype=_amp_dtype(device), enabled=amp):
            logits = model(imgs, text)
        pred = logits.argmax(1).cpu().numpy()
        lab = labels.numpy()
        overall.update(pred, lab)
        if regions is not None:
            for p, t, i in zip(pred, lab, idx.tolist()):
                per_region.setdefault(regions[i], SegMetric(num_classes)).update(p, t)
    return {"overall": overall, "regions": per_region}


def _amp_dtype(device: torch.device):
    return torch.float16 if device.type == "cuda" else torch.bfloat16
