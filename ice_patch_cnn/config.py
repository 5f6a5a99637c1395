"""Profiles: YAML files in ``configs/``; a file may ``inherit:`` another and override it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.configs import deep_merge, read_yaml_mapping

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
REPO_ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("data", "model", "train", "rules", "reported")


class ConfigError(ValueError):
    """A profile that is missing or malformed; the message names the file."""


def config_path(name: str | os.PathLike) -> Path:
    """``quick``/``paper`` name a profile in ``configs/``; anything ending in .yml is a path."""
    path = Path(name)
    if path.suffix in (".yml", ".yaml"):
        return path
    return CONFIG_DIR / f"{name}.yml"


def load_config(name: str | os.PathLike = "quick", _seen: tuple = ()) -> dict[str, Any]:
    """Read a profile (resolving ``inherit``) and check it has the sections every CLI needs."""
    path = config_path(name)
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(CONFIG_DIR.glob("*.yml")))
        raise ConfigError(f"{path}: config not found (profiles: {known})")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'inherit' loop")
    cfg = read_yaml_mapping(path, ConfigError)
    parent = cfg.pop("inherit", None)
    if parent:
        cfg = deep_merge(load_config(path.parent / parent, (*_seen, path.resolve())), cfg)
    if not _seen:
        for section in SECTIONS:
            if not isinstance(cfg.get(section), dict):
                raise ConfigError(f"{path}: missing section {section!r}")
    return cfg


def repo_path(value: str | os.PathLike) -> Path:
    """A path from a config: relative paths are taken from the repository root."""
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path
