"""Profiles (``configs/paper.yml``, ``configs/quick.yml``) and the class list."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.configs import read_yaml_mapping

PKG_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PKG_DIR.parent
CONFIG_DIR = PKG_DIR / "configs"
PROFILES = ("paper", "quick")


class ConfigError(ValueError):
    pass


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML file; an empty file is an error too (a profile must say something)."""
    data = read_yaml_mapping(path, ConfigError)
    if not data:
        raise ConfigError(f"{path}: empty config file")
    return data


def load_profile(profile_or_path: str) -> dict[str, Any]:
    """A profile by name (``paper``/``quick``) or a YAML file path; paths resolved to the repo."""
    if profile_or_path in PROFILES:
        path = CONFIG_DIR / f"{profile_or_path}.yml"
    else:
        path = Path(profile_or_path)
    cfg = load_yaml(path)
    cfg["_source"] = str(path)
    return cfg


def resolve_path(p: str | os.PathLike | None) -> Path | None:
    """Relative paths in configs are relative to the repository root."""
    if p is None:
        return None
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else REPO_ROOT / p


def load_classes(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    cfg = load_yaml(path or CONFIG_DIR / "classes.yml")
    classes = cfg.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ConfigError(f"{path or 'classes.yml'}: 'classes' must be a non-empty list")
    for i, c in enumerate(classes):
        if not isinstance(c, dict) or not {"name", "description"} <= set(c):
            raise ConfigError(f"classes.yml: entry {i} needs 'name' and 'description'")
    return classes


def class_names() -> list[str]:
    return [c["name"] for c in load_classes()]


def class_colors() -> dict[int, tuple[int, int, int]]:
    return {i: tuple(c.get("color", (i * 25, i * 25, i * 25))) for i, c in
            enumerate(load_classes())}
