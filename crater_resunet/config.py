"""Profiles: YAML files in ``configs/`` read by the one config reader, ``shared.configs``
(``inherit:``, dotted ``--set`` overrides, unknown keys are an error)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.configs import ConfigError
from shared.configs import load_config as _load

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PROFILES = {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yml"))}

__all__ = ["CONFIG_DIR", "PROFILES", "ConfigError", "load_config"]


def load_config(name: str | os.PathLike, sets=None) -> dict[str, Any]:
    """The resolved config of a profile name (``quick``, ``paper``) or a YAML path."""
    return _load(name, PROFILES, sets)
