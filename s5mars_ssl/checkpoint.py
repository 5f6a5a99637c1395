"""Load a trained model (teacher or student weights) from a run's checkpoint, safely."""

from __future__ import annotations

import os
from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint is missing or does not hold what was asked for."""


def load_model(path: str | os.PathLike, weights: str = "teacher", device: str = "cpu"):
    """Return ``(model in eval mode, config, which weights were used)``.

    ``weights``: ``teacher`` (falls back to the student for supervised runs, with a note) or
    ``student``. Loaded with ``torch.load(weights_only=True)``.
    """
    import torch

    from s5mars_ssl.augseg.models import DeepLabV3Plus

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if weights not in ("teacher", "student"):
        raise CheckpointError(f"weights must be teacher or student, got {weights!r}")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file is a user error
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(ck, dict) or "student" not in ck or "config" not in ck:
        raise CheckpointError(f"{path}: not an s5mars_ssl checkpoint (no student/config)")
    used = weights
    state = ck.get(weights)
    if state is None:
        used, state = "student", ck["student"]
    model = DeepLabV3Plus(int(ck.get("num_classes", 9)))
    model.load_state_dict(state)
    model.to(device).eval()
    return model, ck["config"], used
