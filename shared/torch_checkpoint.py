"""The one safe torch checkpoint loader and the one strict state-dict check.

* :func:`load_torch_file`: a ``.safetensors`` file (recognised from its suffix or its header)
  through safetensors, anything else through ``torch.load(weights_only=True)``: tensors,
  containers and plain numbers only, so a pickle that would run code is refused before it
  runs. Every failure is one :class:`CheckpointError` naming the file.
* :func:`check_state_dict`: every expected tensor present, none unexpected, every shape equal;
  otherwise one line listing the missing, unexpected and mis-shaped keys (the first few of
  each, with their counts). :func:`load_strict` checks, then loads.

The mapping from an original repository's key names to ours lives beside each model (the
``checkpoint_filter_fn`` pattern of timm: a function next to the model class); the
subprojects' ``checkpoint.py`` recognise the file, call that function and then this check.
torch and safetensors are imported inside the functions.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.errors import UserError

SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointError(UserError):
    """A weights file is missing, unreadable, unsafe, foreign or does not fit the model."""


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


def is_safetensors(path: str | os.PathLike) -> bool:
    """True for a ``.safetensors`` suffix or a safetensors header (8-byte length, then JSON)."""
    path = Path(path)
    if path.suffix == SAFETENSORS_SUFFIX:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and not zipfile.is_zipfile(path)


def load_safetensors(path: str | os.PathLike, device: str = "cpu"
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; errors name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return load_file(str(path), device=str(device)), dict(meta)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint "
                              f"({_first_line(exc)})") from None


def load_torch_file(path: str | os.PathLike, map_location: Any = "cpu",
                    what: str = "checkpoint") -> Any:
    """The object in a torch file read with ``weights_only=True`` (a safetensors file: its
    tensors); a missing, truncated, foreign or code-running file is a :class:`CheckpointError`
    naming it (``what``: the word used in the message)."""
    import pickle

    import torch

    from shared.runs import library_noise

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    if is_safetensors(path):
        return load_safetensors(path, str(map_location))[0]
    try:
        with library_noise():  # torch's warnings would precede the one-line refusal
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "global" in text.lower():
            raise CheckpointError(
                f"{path}: not a readable {what}: refused, it holds Python objects other than "
                "tensors (loading it could run code; torch files are read weights-only)"
            ) from None
        raise CheckpointError(f"{path}: not a readable {what} ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, TypeError,
            AttributeError, KeyError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a readable {what} ({type(exc).__name__}: "
                              f"{_first_line(exc)})") from None


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping of parameter names to tensors."""
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def strip_prefix(state: Mapping[str, Any], *prefixes: str) -> dict[str, Any]:
    """Keys without a leading ``module.`` (DataParallel) or the other ``prefixes``."""
    out = {}
    for k, v in state.items():
        for p in prefixes or ("module.",):
            k = k.removeprefix(p)
        out[k] = v
    return out


def state_dict_problems(expected: Mapping[str, Any], got: Mapping[str, Any],
                        show: int = 5) -> str:
    """'' when ``got`` fits ``expected`` (same keys, same shapes); else the one-line list:
    ``N missing (first: a, b), N unexpected (first: ...), N with another shape (first: k
    (2, 3) != (3, 3))``."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    bad = [f"{k} {tuple(got[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
           if k in got and tuple(getattr(got[k], "shape", ())) != tuple(v.shape)]
    parts = []
    for label, items, sep in (("missing", missing, ", "), ("unexpected", unexpected, ", "),
                              ("with another shape", bad, "; ")):
        if items:
            more = " ..." if len(items) > show else ""
            parts.append(f"{len(items)} {label} (first: {sep.join(items[:show])}{more})")
    return ", ".join(parts)


def check_state_dict(expected: Mapping[str, Any], got: Mapping[str, Any],
                     path: str | os.PathLike | None, what: str = "model") -> None:
    """Every key of ``expected`` present with its shape and no other key; else one
    :class:`CheckpointError` naming ``path`` and listing the offenders."""
    problems = state_dict_problems(expected, got)
    if problems:
        where = f"{path}: " if path is not None else ""
        raise CheckpointError(f"{where}weights do not fit the {what}: {problems}")


def load_strict(model: Any, state: Mapping[str, Any], path: str | os.PathLike | None,
                what: str = "model") -> Any:
    """:func:`check_state_dict` against ``model`` (a DDP wrapper is unwrapped), then
    ``load_state_dict(strict=True)``; returns the model."""
    inner = model.module if hasattr(model, "module") else model
    check_state_dict(inner.state_dict(), state, path, what)
    inner.load_state_dict(state, strict=True)
    return model
