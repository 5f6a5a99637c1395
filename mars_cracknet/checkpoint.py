"""Checkpoints: weights as safetensors (with the model name in the metadata), training state
(optimizer, epoch, step, RNG) as a torch file loaded with ``weights_only=True``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from shared.atomic import atomic_path


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model; names the file."""


def save_weights(path: str | Path, model: torch.nn.Module, model_name: str) -> Path:
    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    inner = _unwrap(model)
    meta = {"model": model_name, "num_classes": str(inner.num_classes),
            "width": str(getattr(inner, "width", 64))}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """Model name, class count and base width stored in a weights file."""
    _, meta = read_weights(path)
    return {"model": meta.get("model"), "num_classes": int(meta.get("num_classes", 1)),
            "width": int(meta.get("width", 64))}


def load_weights(path: str | Path, model: torch.nn.Module, model_name: str | None = None
                 ) -> torch.nn.Module:
    """Load weights strictly; a checkpoint of another model or shape is a CheckpointError."""
    state, meta = read_weights(path)
    if model_name is not None and meta.get("model") not in (None, model_name):
        raise CheckpointError(f"{path}: checkpoint is for model {meta.get('model')!r}, "
                              f"not {model_name!r}")
    try:
        _unwrap(model).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[:3])
        raise CheckpointError(f"{path}: weights do not fit this model ({detail})") from None
    return model


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: training state not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise CheckpointError(f"{path}: not a readable training state ({exc})") from None


def transfer_autoencoder_weights(ae_state: dict[str, torch.Tensor], model: torch.nn.Module,
                                 head_prefix: str = "head.") -> torch.nn.Module:
    """Load auto-encoder weights (3 output channels) into a 1-class segmentation network.

    Every tensor is copied as is, except the final 1x1 convolution, of which only the first
    output channel is kept (as the original's semi-supervised scheme does).
    """
    target = _unwrap(model).state_dict()
    new = {}
    for key, value in ae_state.items():
        if key not in target:
            raise CheckpointError(f"auto-encoder tensor {key!r} has no counterpart in the model")
        if key.startswith(head_prefix) and value.shape != target[key].shape:
            value = value[: target[key].shape[0]]
        if value.shape != target[key].shape:
            raise CheckpointError(f"auto-encoder tensor {key!r} has shape {tuple(value.shape)}, "
                                  f"the model needs {tuple(target[key].shape)}")
        new[key] = value
    missing = set(target) - set(new)
    if missing:
        raise CheckpointError(f"auto-encoder checkpoint lacks {sorted(missing)[:5]}")
    _unwrap(model).load_state_dict(new, strict=True)
    return model


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def describe(path: str | Path) -> str:
    return json.dumps(checkpoint_info(path))
