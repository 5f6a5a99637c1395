"""Checkpoints: our weights as safetensors (model name, class count, width and provenance in
the metadata), the training state as a torch file loaded with ``weights_only=True``, and the
original code's ``torch.save(net.state_dict())`` files (``Res_UNet`` and ``UNet``), recognised
from their keys and mapped strictly onto our modules (the key maps live beside the models:
``models/resunet.py`` and ``models/unet.py`` ``checkpoint_filter_fn``; the loader and the strict
check are ``shared.torch_checkpoint``'s).

``load_model(path)`` accepts any of: a run folder (its ``best.safetensors``), our
``.safetensors``, an original ``.pth``/``.pt`` state dict (optionally with DataParallel's
``module.`` prefix), or a torch file holding our keys. Nothing is unpickled beyond tensors.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from shared.atomic import atomic_path
from shared.torch_checkpoint import (
    CheckpointError,
    check_state_dict,
    load_safetensors,
    load_torch_file,
)

FORMATS = ("ours", "original_resunet", "original_unet")


# --------------------------------------------------------------------------- our format
def save_weights(path: str | Path, model: torch.nn.Module, model_name: str,
                 extra_meta: dict[str, str] | None = None) -> Path:
    inner = _unwrap(model)
    state = {k: v.detach().cpu().contiguous() for k, v in inner.state_dict().items()}
    meta = {"model": model_name, "num_classes": str(inner.num_classes),
            "width": str(getattr(inner, "width", 64)), **(extra_meta or {})}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    return load_safetensors(path)  # shared.torch_checkpoint: errors name the file


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """Model name, class count and base width stored in a weights file."""
    _, meta = read_weights(path)
    return {"model": meta.get("model"), "num_classes": int(meta.get("num_classes", 1)),
            "width": int(meta.get("width", 64))}


def load_weights(path: str | Path, model: torch.nn.Module, model_name: str | None = None
                 ) -> torch.nn.Module:
    """Load our weights strictly; a checkpoint of another model or shape is an error."""
    state, meta = read_weights(path)
    if model_name is not None and meta.get("model") not in (None, model_name):
        raise CheckpointError(f"{path}: checkpoint is for model {meta.get('model')!r}, "
                              f"not {model_name!r}")
    _load_strict(path, model, state)
    return model


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_state(path: str | Path) -> dict[str, Any]:
    return load_torch_file(path, what="training state")  # weights-only, errors name the file


# --------------------------------------------------------------------------- original files
def detect_format(state: dict[str, torch.Tensor]) -> str:
    """``ours``, ``original_resunet`` or ``original_unet`` from the keys; else ''."""
    keys = set(state)
    if "conv_original_size0.0.weight" in keys or "firstconv.weight" in keys:
        return "original_resunet"
    if "inc.conv.conv.0.weight" in keys or "outc.conv.weight" in keys:
        return "original_unet"
    if "full_res.0.0.weight" in keys or "inc.0.weight" in keys:
        return "ours"
    return ""


def convert_original(state: dict[str, torch.Tensor], fmt: str, path: str | Path
                     ) -> dict[str, torch.Tensor]:
    """The original state dict with our key names, by the key map beside each model
    (``models/resunet.py``, ``models/unet.py``: ``checkpoint_filter_fn``; no tensor changes:
    the concatenation orders of both networks are the original's); unknown keys are an
    error."""
    from mars_cracknet.models import resunet, unet

    out, unexpected = (resunet if fmt == "original_resunet" else unet).checkpoint_filter_fn(state)
    if unexpected:
        raise CheckpointError(f"{path}: unexpected keys for an original {fmt[9:]} checkpoint: "
                              f"{', '.join(unexpected[:5])}"
                              f"{' ...' if len(unexpected) > 5 else ''}")
    return out


# --------------------------------------------------------------------------- any file
def read_any(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """(state dict in our key names, metadata, detected format) of any supported file."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if zipfile.is_zipfile(path) or head[:2] == b"\x80\x02":
        state, meta = _read_torch(path), {}
    else:
        state, meta = read_weights(path)
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    fmt = detect_format(state)
    if not fmt:
        shown = ", ".join(list(state)[:3]) or "none"
        raise CheckpointError(f"{path}: not a Mars-CrackNet checkpoint (neither ours nor the "
                              f"original ResUNet/UNet layout; first keys: {shown})")
    if fmt != "ours":
        state = convert_original(state, fmt, path)
        meta = {"model": "resunet" if fmt == "original_resunet" else "unet",
                "num_classes": str(int(state["head.weight"].shape[0])),
                "width": str(int(state["inc.0.weight"].shape[0])) if "inc.0.weight" in state
                else "64"}
    else:
        meta = dict(meta)
        meta.setdefault("model", "unet" if "inc.0.weight" in state else "resunet")
        meta.setdefault("num_classes", str(int(state["head.weight"].shape[0]))
                        if "head.weight" in state else "1")
        meta.setdefault("width", str(int(state["inc.0.weight"].shape[0]))
                        if "inc.0.weight" in state else "64")
    return state, meta, fmt


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    obj = load_torch_file(path)  # weights-only: a pickle that runs code is refused
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), "
                              f"found {type(obj).__name__}")
    return obj


def load_model(path: str | Path, model_name: str | None = None, device: str = "cpu"
               ) -> tuple[torch.nn.Module, str]:
    """(our model in eval mode, its name) from our checkpoint or an original file."""
    from mars_cracknet.models import build_model

    state, meta, _ = read_any(path)
    stored = meta["model"]
    if model_name not in (None, "auto") and model_name != stored:
        raise CheckpointError(f"{path}: checkpoint is for model {stored!r}, not {model_name!r}")
    try:
        model = build_model(stored, num_classes=int(meta["num_classes"]),
                            width=int(meta["width"]))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _load_strict(path, model, state)
    return model.to(device).eval(), stored


def init_from(path: str | Path, model: torch.nn.Module) -> str:
    """Initialise ``model`` from any supported file (an auto-encoder's 3-channel head keeps
    its first channel); returns the detected format."""
    state, _, fmt = read_any(path)
    transfer_autoencoder_weights(state, model, source=str(path))
    return fmt


def _load_strict(path, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    check_state_dict(_unwrap(model).state_dict(), state, path)  # one line names the offenders
    _unwrap(model).load_state_dict(state, strict=True)


def transfer_autoencoder_weights(ae_state: dict[str, torch.Tensor], model: torch.nn.Module,
                                 head_prefix: str = "head.", source: str = "auto-encoder"
                                 ) -> torch.nn.Module:
    """Load weights (e.g. an auto-encoder's, 3 output channels) into a segmentation network.

    Every tensor is copied as is, except the final 1x1 convolution, of which only the first
    output channels are kept (as the original's semi-supervised scheme does).
    """
    target = _unwrap(model).state_dict()
    new = {}
    for key, value in ae_state.items():
        if key not in target:
            raise CheckpointError(f"{source}: tensor {key!r} has no counterpart in the model")
        if key.startswith(head_prefix) and value.shape != target[key].shape:
            value = value[: target[key].shape[0]]
        new[key] = value
    _load_strict(source, model, new)
    return model


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
