"""Profiles: YAML files in ``configs/``; ``inherit:`` merges a child over its parent."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A profile that is missing or malformed; the message names the file."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


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
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    parent = cfg.pop("inherit", None)
    if parent:
        cfg = _merge(load_config(path.parent / parent, (*_seen, path.resolve())), cfg)
    for section in ("data", "model", "train", "predict"):
        if not isinstance(cfg.get(section), dict):
            raise ConfigError(f"{path}: missing section {section!r}")
    return cfg


def data_root(cfg: dict) -> Path:
    root = Path(cfg["data"]["root"])
    return root if root.is_absolute() else REPO_ROOT / root
