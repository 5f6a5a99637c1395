"""Load a model from our checkpoint or from the original (AugSeg/S5Mars) code's files, safely.

Recognised from the keys, no flag needed:

* ours (``last.pt``/``best.pt`` of a run, or a converted file): ``{"student", "teacher",
  "config", "normalization", ...}``;
* the original's ``ckpt_best.pth`` / ``ckpt.pth``: ``{"epoch", "model_state",
  "optimizer_state", "teacher_state", "best_miou"}`` with the DistributedDataParallel
  ``module.`` prefix (``teacher_state`` is the evaluated model);
* a bare original model state dict (with or without ``module.``).

The original layout differs from ours in names only, except one order: the deep stem is
``encoder.conv1.{0,1,3,4,6}`` + ``encoder.bn1`` (ours ``conv1/bn1, conv2/bn2, conv3/bn3``), the
ASPP branches are ``conv1`` (pooling) .. ``conv5`` (ours ``pool``, ``conv1``, ``atrous.0-2``), the
classifier is one ``Sequential`` (ours three blocks) and its first 3x3 conv takes (low-level 48,
ASPP 256) channels in that order, ours (ASPP 256, low-level 48): the converter permutes that
tensor's input channels. That key map lives beside the model
(``augseg/models/model_helper.checkpoint_filter_fn``, the stem in ``resnet.py``); here it is
checked strictly (``shared.torch_checkpoint``): every tensor placed, every shape checked.

The normalisation travels with the weights: ours from the checkpoint; for an original file the
original's ``mean [0.625, 0.519, 0.363]``, ``std [0.01803789, 0.01469946, 0.00991374]``.
Everything is read with ``shared.torch_checkpoint.load_torch_file`` (``torch.load(weights_only=
True)``): a pickle that runs code is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from shared.atomic import file_sha256 as sha256
from shared.torch_checkpoint import CheckpointError, check_state_dict, load_torch_file

ORIGINAL_NORMALIZATION = {"mean": [0.625, 0.519, 0.363],
                          "std": [0.01803789, 0.01469946, 0.00991374],
                          "note": "the original's values (pku2mars.py trf_normalize)"}
ORIGINAL_KEYS = ("model_state", "teacher_state")


def convert_original_state(state: dict, path, num_classes: int | None = None) -> dict:
    """The original's model state dict -> ours (``model_helper.checkpoint_filter_fn``, beside
    the model), checked strictly: missing/unexpected/mis-shaped keys in one error line."""
    import torch

    from s5mars_ssl.augseg.models import DeepLabV3Plus
    from s5mars_ssl.augseg.models.model_helper import checkpoint_filter_fn

    out = checkpoint_filter_fn(state, path)
    cls = out.get("decoder.classifier.2.bias")
    n = num_classes or (int(cls.shape[0]) if torch.is_tensor(cls) else 9)
    check_state_dict(DeepLabV3Plus(n).state_dict(), out, path)
    return out


def safe_load(path: str | os.PathLike, device: str = "cpu"):
    """``shared.torch_checkpoint.load_torch_file``: weights-only, errors naming the file."""
    return load_torch_file(path, map_location=device)


def _is_state_dict(obj) -> bool:
    from shared.torch_checkpoint import is_state_dict

    return is_state_dict(obj)


def detect_format(obj) -> str:
    """``ours``, ``original_checkpoint``, ``original_state_dict`` or ``unknown``."""
    if isinstance(obj, dict) and "student" in obj and "config" in obj:
        return "ours"
    if isinstance(obj, dict) and any(k in obj for k in ORIGINAL_KEYS):
        return "original_checkpoint"
    if _is_state_dict(obj) and any(re.match(r"(module\.)?encoder\.conv1\.0\.weight$", k)
                                   for k in obj):
        return "original_state_dict"
    return "unknown"


def read_weights(path: str | os.PathLike, weights: str = "teacher", device: str = "cpu"
                 ) -> tuple[dict, dict]:
    """``(state dict in our layout, info)`` from any supported file.

    ``info``: ``format``, ``weights`` (which were used), ``config`` (ours only, else None),
    ``normalization`` and ``num_classes``. ``weights="teacher"`` falls back to the student for
    a supervised run (no teacher), with ``info["weights"] == "student"``.
    """
    if weights not in ("teacher", "student"):
        raise CheckpointError(f"weights must be teacher or student, got {weights!r}")
    obj = safe_load(path, device)
    fmt = detect_format(obj)
    if fmt == "ours":
        used = weights if obj.get(weights) is not None else "student"
        state = obj[used]
        if not _is_state_dict(state):
            raise CheckpointError(f"{path}: the {used} entry is not a state dict")
        cfg = obj["config"]
        norm = obj.get("normalization") or {"mean": cfg["dataset"]["mean"],
                                            "std": cfg["dataset"]["std"]}
        from s5mars_ssl.augseg.models import DeepLabV3Plus

        n = int(obj.get("num_classes", 9))
        check_state_dict(DeepLabV3Plus(n).state_dict(), state, path)
        return state, {"format": fmt, "weights": used, "config": cfg, "normalization": norm,
                       "num_classes": n, "provenance": obj.get("provenance")}
    if fmt == "original_checkpoint":
        key = "teacher_state" if weights == "teacher" else "model_state"
        used = weights
        if not _is_state_dict(obj.get(key)):
            if weights == "teacher" and _is_state_dict(obj.get("model_state")):
                key, used = "model_state", "student"
            else:
                raise CheckpointError(f"{path}: original checkpoint without a {key} state dict")
        state = obj[key]
    elif fmt == "original_state_dict":
        state, used = obj, "model"
    else:
        keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: neither an s5mars_ssl checkpoint nor the original's "
                              f"ckpt*.pth / model state dict (top-level keys: {keys})")
    ours = convert_original_state(state, path)
    return ours, {"format": fmt, "weights": used, "config": None,
                  "normalization": dict(ORIGINAL_NORMALIZATION),
                  "num_classes": int(ours["decoder.classifier.2.bias"].shape[0]),
                  "provenance": None}


def load_model(path: str | os.PathLike, weights: str = "teacher", device: str = "cpu"):
    """``(model in eval mode, info)`` from our checkpoint or an original file (see module doc).

    ``info["normalization"]`` holds the mean/std the weights were trained with; ``info["config"]``
    the run's config for our checkpoints (None for an original file).
    """
    from s5mars_ssl.augseg.models import DeepLabV3Plus

    state, info = read_weights(path, weights, device)
    model = DeepLabV3Plus(info["num_classes"])
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    return model, info



def convert(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """Write an original file as our checkpoint (student and teacher when both are there),
    with its provenance; returns the provenance record."""
    import torch

    from shared.atomic import atomic_path

    src, dst = Path(src), Path(dst)
    obj = safe_load(src)
    fmt = detect_format(obj)
    if fmt not in ("original_checkpoint", "original_state_dict"):
        raise CheckpointError(f"{src}: not an original S5Mars/AugSeg checkpoint (format {fmt})")
    teacher, tinfo = read_weights(src, "teacher")
    student = teacher
    if fmt == "original_checkpoint" and "model_state" in obj:
        student, _ = read_weights(src, "student")
    prov = {"source": src.name, "sha256": sha256(src), "format": fmt,
            "teacher_from": tinfo["weights"],
            "epoch": obj.get("epoch") if isinstance(obj, dict) else None,
            "best_miou": obj.get("best_miou") if isinstance(obj, dict) else None}
    prov = {k: (v.item() if hasattr(v, "item") else v) for k, v in prov.items()}
    from s5mars_ssl.augseg.utils.config import load_config

    cfg = load_config("paper")
    state = {"format": "s5mars_ssl/1", "student": student, "teacher": teacher,
             "optimizer": None, "iteration": 0, "history": [], "best_miou": -1.0,
             "config": cfg, "mode": "semi", "num_classes": tinfo["num_classes"],
             "normalization": tinfo["normalization"], "provenance": prov}
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        torch.save(state, tmp)
    return prov
