"""YAML configs with ``_base_`` inheritance and ``key.sub=value`` overrides."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from shared.configs import deep_merge, read_yaml_mapping

PACKAGE_DIR = Path(__file__).resolve().parents[2]
REPO_ROOT = PACKAGE_DIR.parent


class ConfigError(ValueError):
    """A config file is missing, malformed or holds a bad value."""


def load_config(path: str | os.PathLike) -> dict:
    """Read a YAML config; a ``_base_`` key (path relative to the file) is merged underneath."""
    path = Path(path)
    cfg = read_yaml_mapping(path, ConfigError)
    base = cfg.pop("_base_", None)
    if base:
        cfg = deep_merge(load_config(path.parent / base), cfg)
    return cfg


def apply_overrides(cfg: dict, overrides: list[str] | None) -> dict:
    """``["semi.augin.enabled=false", "trainer.iterations=10"]`` -> updated copy of ``cfg``."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = cfg
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return cfg


def resolve_path(p: str | os.PathLike | None) -> Path | None:
    """A relative path is taken from the current folder if it exists there, else from the repo."""
    if p is None:
        return None
    p = Path(p).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def get(cfg: dict, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def validate(cfg: dict) -> None:
    """Catch the common mistakes with a message naming the key."""
    for key in ("dataset", "net", "trainer"):
        if not isinstance(cfg.get(key), dict):
            raise ConfigError(f"config: missing section {key!r}")
    t = cfg["trainer"]
    if not t.get("iterations") and not t.get("epochs"):
        raise ConfigError("config: trainer.iterations or trainer.epochs must be set")
    for key in ("lr", "batch_labeled"):
        if not isinstance(t.get(key), (int, float)) or t[key] <= 0:
            raise ConfigError(f"config: trainer.{key} must be a positive number, got "
                              f"{t.get(key)!r}")
    crop = cfg["dataset"].get("crop_size")
    if not isinstance(crop, int) or crop < 32:
        raise ConfigError(f"config: dataset.crop_size must be an integer >= 32, got {crop!r}")
    mode = get(cfg, "semi.augin.mode", "both")
    if mode not in ("mean", "std", "both"):
        raise ConfigError(f"config: semi.augin.mode must be mean, std or both, got {mode!r}")
