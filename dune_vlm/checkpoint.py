"""Checkpoints: ours (``best.pt``/``last.pt``) and the reference code's ``best_model.pth``.

``load_model(path)`` recognises the file by its keys, with no flag:

* ours: a dict with ``model`` (state dict) and ``model_spec`` (how to rebuild the model), plus
  the text embeddings the model was trained with;
* the reference's ``torch.save(model.state_dict(), 'best_model.pth')`` of the fusion model
  (``patch_embeds.*``, ``blocks.*``, ``alignment_module.*``, ``decode_head.*``) or of the
  Embed-only baseline (original SegFormer names ``patch_embed1``, ``block1``, ``linear_c1``...),
  optionally with DataParallel's ``module.`` prefix. The architecture is read from the tensor
  shapes; every tensor is renamed to ours and placed strictly (a missing, unexpected or
  mis-shaped tensor is an error naming the first of them). The reference file holds no text
  embeddings: the fusion model then needs ``--text_embed_path``.

The key maps live beside the models (``models/fusion.py`` and ``models/segformer.py``:
``checkpoint_filter_fn``); the strict check and the loader are ``shared.torch_checkpoint``'s.
Everything is loaded with ``torch.load(weights_only=True)``: a pickle that would run code is
refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dune_vlm.models.fusion import build_model
from shared.atomic import atomic_path
from shared.atomic import file_sha256 as sha256
from shared.errors import UserError
from shared.torch_checkpoint import check_state_dict, load_torch_file

OURS, REF_FUSION, REF_BASELINE = "dune_vlm", "reference-fusion", "reference-baseline"
# heads per stage of the reference's two configurations (not recoverable from tensor shapes)
REF_HEADS = {(64, 128, 256, 512): (1, 2, 4, 8), (32, 64, 160, 256): (1, 2, 5, 8)}


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


def model_from_spec(spec: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a model from a checkpoint's spec (``arch``: optional size overrides)."""
    arch = {k: tuple(v) if isinstance(v, list) else v for k, v in (spec.get("arch") or {}).items()}
    try:
        return build_model(spec["name"], num_classes=spec["num_classes"],
                           text_dim=spec.get("text_dim", 512), in_chans=spec.get("in_chans", 64),
                           **arch)
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"bad model specification {spec} ({exc})") from None


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def read_file(path: str | os.PathLike, map_location="cpu") -> Any:
    """``shared.torch_checkpoint.load_torch_file`` (weights-only; one-line errors naming the
    file)."""
    return load_torch_file(path, map_location=map_location)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict[str, Any]:
    """Our checkpoint dict (``model``, ``model_spec``...); any other file is an error."""
    ckpt = read_file(path, map_location)
    if detect_format(ckpt) != OURS:
        raise UserError(f"{path}: not a dune_vlm checkpoint (no model weights/spec); a "
                        "reference best_model.pth loads with load_model / --weights")
    return ckpt


def detect_format(obj: Any) -> str | None:
    """``dune_vlm``, ``reference-fusion``, ``reference-baseline`` or None (foreign)."""
    if isinstance(obj, dict) and "model" in obj and "model_spec" in obj:
        return OURS
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        return None
    keys = {_strip_module(k) for k in obj}
    if "alignment_module.vis_proj_q.weight" in keys or "decode_head.linear_fuse.weight" in keys:
        return REF_FUSION
    if "patch_embed1.proj.weight" in keys or "linear_c1.weight" in keys:
        return REF_BASELINE
    return None


def _strip_module(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


# --------------------------------------------------------------------------- key mapping
def _stage_arch(sd: dict[str, torch.Tensor], embed_key, block_prefix) -> dict[str, Any]:
    """Embed dims, depths, sr ratios and MLP ratio from reference tensor shapes."""
    dims, depths, srs = [], [], []
    for i in range(4):
        w = sd.get(embed_key(i))
        if w is None:
            raise KeyError(embed_key(i))
        dims.append(int(w.shape[0]))
        pre = block_prefix(i)
        idx = {int(k[len(pre):].split(".")[0]) for k in sd if k.startswith(pre)}
        depths.append(len(idx))
        sr = sd.get(f"{pre}0.attn.sr.weight")
        srs.append(int(sr.shape[-1]) if sr is not None else 1)
    heads = REF_HEADS.get(tuple(dims))
    if heads is None:
        raise KeyError(f"attention heads for embed dims {dims} (known: {list(REF_HEADS)})")
    fc1 = sd[f"{block_prefix(0)}0.mlp.fc1.weight"]
    return {"embed_dims": dims, "depths": depths, "sr_ratios": srs, "num_heads": list(heads),
            "mlp_ratio": float(fc1.shape[0]) / dims[0]}


def reference_spec(sd: dict[str, torch.Tensor], fmt: str) -> dict[str, Any]:
    """Our model spec for a reference state dict (architecture from tensor shapes)."""
    if fmt == REF_FUSION:
        arch = _stage_arch(sd, lambda i: f"patch_embeds.{i}.proj.weight",
                           lambda i: f"blocks.{i}.")
        arch["decoder_dim"] = int(sd["decode_head.linear_fuse.weight"].shape[0])
        return {"name": "fusion", "num_classes": int(sd["decode_head.linear_pred.weight"].shape[0]),
                "text_dim": int(sd["alignment_module.text_proj_k.weight"].shape[1]),
                "in_chans": int(sd["patch_embeds.0.proj.weight"].shape[1]), "arch": arch}
    arch = _stage_arch(sd, lambda i: f"patch_embed{i + 1}.proj.weight",
                       lambda i: f"block{i + 1}.")
    if arch.pop("mlp_ratio") != 4.0:
        raise KeyError("MLP ratio 4 of the reference baseline")
    arch["decoder_dim"] = int(sd["linear_fuse.weight"].shape[0])
    return {"name": "baseline", "num_classes": int(sd["linear_pred.weight"].shape[0]),
            "in_chans": int(sd["patch_embed1.proj.weight"].shape[1]), "arch": arch}


def from_reference(obj: dict[str, torch.Tensor], fmt: str, path) -> tuple[dict, dict]:
    """(our state dict, spec) from a reference state dict; strict, errors name ``path``."""
    sd = {_strip_module(k): v for k, v in obj.items()}
    try:
        spec = reference_spec(sd, fmt)
    except KeyError as exc:
        raise UserError(f"{path}: a {fmt} state dict, but it lacks {exc.args[0]}") from None
    from dune_vlm.models import fusion, segformer

    # the key map lives beside each model (timm's checkpoint_filter_fn pattern)
    mapped = (fusion if fmt == REF_FUSION else segformer).checkpoint_filter_fn(sd)
    model = model_from_spec(spec)
    check_strict(model.state_dict(), mapped, path, fmt)
    return mapped, spec


def check_strict(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], path,
                 what: str) -> None:
    """``shared.torch_checkpoint.check_state_dict``: every tensor placed, every shape equal;
    else one error line naming the offenders."""
    check_state_dict(expected, got, path, f"model ({what} weights)")


# --------------------------------------------------------------------------- loading
def resolve_weights(path: str | os.PathLike) -> tuple[dict, dict, str, dict]:
    """(our state dict, spec, format, the checkpoint dict or {}) for any supported file."""
    obj = read_file(path)
    fmt = detect_format(obj)
    if fmt is None:
        keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise UserError(f"{path}: neither a dune_vlm checkpoint nor a reference fusion/baseline "
                        f"state dict (found {keys})")
    if fmt == OURS:
        return obj["model"], obj["model_spec"], fmt, obj
    sd, spec = from_reference(obj, fmt, path)
    return sd, spec, fmt, {}


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu"
               ) -> torch.nn.Module:
    """Our model in eval mode from our checkpoint or a reference ``best_model.pth``.

    The model carries ``checkpoint_format`` and, for our files, ``stored_text`` (the text
    embeddings it was trained with, or None)."""
    sd, spec, fmt, ckpt = resolve_weights(path)
    model = model_from_spec(spec)
    check_strict(model.state_dict(), sd, path, fmt)
    model.load_state_dict(sd, strict=True)
    model.checkpoint_format = fmt
    model.model_spec = spec
    stored = ckpt.get("text_embeds")
    model.stored_text = stored.float() if torch.is_tensor(stored) else None
    return model.to(device).eval()


def text_for(model: torch.nn.Module, weights, text_embed_path=None,
             device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The text embeddings to run ``model`` with: ``--text_embed_path``, else the stored ones.

    A model that takes no text refuses ``--text_embed_path`` (it would be silently ignored)."""
    spec = model.model_spec
    if not getattr(model, "uses_text", False):
        if text_embed_path is not None:
            raise UserError(f"{text_embed_path}: the {spec['name']} model in {weights} takes no "
                            "text; drop --text_embed_path")
        return None
    if text_embed_path is not None:
        arr = load_text_embeds(text_embed_path, spec["num_classes"])
        if arr.shape[1] != spec.get("text_dim"):
            raise UserError(f"{text_embed_path}: {arr.shape[1]}-d embeddings but the model in "
                            f"{weights} takes text_dim={spec.get('text_dim')}")
        text = torch.from_numpy(arr)
    elif getattr(model, "stored_text", None) is not None:
        text = model.stored_text
    else:
        raise UserError(f"{weights}: holds no text embeddings (a reference best_model.pth "
                        "never does); pass --text_embed_path")
    return text.to(device)


def load_model_for_inference(weights, text_embed_path=None, device="cpu"):
    """(model in eval mode, text tensor or None, its spec)."""
    model = load_model(weights, device)
    return model, text_for(model, weights, text_embed_path, device), model.model_spec



def convert(src: str | os.PathLike, dst: str | os.PathLike,
            text_embed_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write our checkpoint format from ``src`` (reference or ours), with provenance."""
    from shared.runs import check_not_inputs

    check_not_inputs([dst], [src, text_embed_path])
    sd, spec, fmt, ckpt = resolve_weights(src)
    model = model_from_spec(spec)
    check_strict(model.state_dict(), sd, src, fmt)
    payload: dict[str, Any] = {
        "model": {k: v.detach().clone() for k, v in sd.items()}, "model_spec": spec,
        "provenance": {"source": Path(src).name, "sha256": sha256(src), "format": fmt},
    }
    text = ckpt.get("text_embeds")
    if text_embed_path is not None:
        model.model_spec = spec
        text = text_for(model, src, text_embed_path)
    if text is not None:
        payload["text_embeds"] = text.detach().cpu().float()
    save_checkpoint(dst, payload)
    return payload
