"""Profiles: YAML files in ``configs/`` read by the one config reader, ``shared.configs``.

``paper.yml`` is the schema: a profile that ``inherit:``s it (``quick.yml``, a user's YAML) or a
``--set key.sub=value`` may only change keys that exist there; any other key is an error naming
the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.configs import ConfigError
from shared.configs import load_config as _load

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SECTIONS = ("data", "model", "train", "rules", "reported")
PROFILES = {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yml"))}

__all__ = ["ConfigError", "PROFILES", "check_sections", "load_config"]


def check_sections(cfg: dict[str, Any], name: str | os.PathLike = "config") -> dict[str, Any]:
    """``cfg`` if it has every section the CLIs need, else a ``ConfigError`` naming ``name``."""
    for section in SECTIONS:
        if not isinstance(cfg.get(section), dict):
            raise ConfigError(f"{name}: missing section {section!r}")
    return cfg


def load_config(name: str | os.PathLike = "quick", sets=None) -> dict[str, Any]:
    """Read a profile (``paper``, ``quick``) or a YAML path, with ``sets`` overrides."""
    return check_sections(_load(name, PROFILES, sets), name)
