"""Profiles: YAML files in ``configs/``; ``inherit:`` merges a child over its parent."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.configs import deep_merge, read_yaml_mapping

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A profile that is missing or malformed; the message names the file."""


def resolve_path(name: str | os.PathLike) -> Path:
    """A profile name (``quick``) or a YAML path."""
    p = Path(name)
    if p.suffix in (".yml", ".yaml"):
        return p
    return CONFIG_DIR / f"{name}.yml"


def load_config(name: str | os.PathLike, _seen: tuple = ()) -> dict[str, Any]:
    path = resolve_path(name)
    if not path.is_file():
        raise ConfigError(f"{path}: config not found (profiles: "
                          f"{', '.join(p.stem for p in sorted(CONFIG_DIR.glob('*.yml')))})")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: inherit loop")
    cfg = read_yaml_mapping(path, ConfigError)
    parent = cfg.pop("inherit", None)
    if parent:
        cfg = deep_merge(load_config(path.parent / parent, (*_seen, path.resolve())), cfg)
    for section in ("data", "model", "train", "predict"):
        if not isinstance(cfg.get(section), dict):
            raise ConfigError(f"{path}: missing section {section!r}")
    return cfg


def data_root(cfg: dict) -> Path:
    root = Path(cfg["data"]["root"])
    return root if root.is_absolute() else REPO_ROOT / root
