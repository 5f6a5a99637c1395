"""Profiles (``configs/paper.yml``, ``configs/quick.yml``) and the class list."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.configs import ConfigError, load_config, read_yaml_mapping, unknown_keys

PKG_DIR = Path(__file__).resolve().parent.parent
CONFIG_DIR = PKG_DIR / "configs"
PROFILES = ("paper", "quick")
PROFILE_FILES = {name: CONFIG_DIR / f"{name}.yml" for name in PROFILES}
SCHEMA_FILE = PROFILE_FILES["paper"]  # every config's keys must exist in paper.yml
__all__ = ["ConfigError", "load_run_config", "validate"]


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML file; an empty file is an error too (a profile must say something)."""
    data = read_yaml_mapping(path, ConfigError)
    if not data:
        raise ConfigError(f"{path}: empty config file")
    return data


def load_run_config(spec: str | os.PathLike = "quick", sets=None) -> dict[str, Any]:
    """A profile name or YAML file (``inherit:`` allowed) with dotted ``sets``, validated.

    Unknown keys are an error in every file and override (the schema is ``paper.yml``, also
    for a YAML file that does not inherit from it)."""
    cfg = load_config(spec, PROFILE_FILES, sets)
    bad = unknown_keys(load_yaml(SCHEMA_FILE), cfg)
    if bad:
        raise ConfigError(f"{spec}: unknown config key(s) {', '.join(bad)} (not in "
                          f"{SCHEMA_FILE.name})")
    return validate(cfg, str(spec))


def validate(cfg: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Named errors for values the trainer cannot use."""
    for section in ("data", "text", "model", "train"):
        if not isinstance(cfg.get(section), dict):
            raise ConfigError(f"{source}: section {section!r} is missing")
    t, m = cfg["train"], cfg["model"]
    if m.get("name") not in ("fusion", "baseline"):
        raise ConfigError(f"{source}: model.name must be fusion or baseline, got "
                          f"{m.get('name')!r}")
    if not cfg["data"].get("root"):
        raise ConfigError(f"{source}: data.root is missing")
    if m["name"] == "fusion" and not cfg["text"].get("embed_path"):
        raise ConfigError(f"{source}: text.embed_path is missing (the fusion model needs "
                          "(classes, D) text embeddings; make them with "
                          "python -m dune_vlm.make_text_embeds)")
    try:
        ok = (int(t["epochs"]) >= 1 and int(t["batch_size"]) >= 1 and float(t["lr"]) > 0
              and int(t["workers"]) >= 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: bad train settings ({exc})") from None
    if not ok:
        raise ConfigError(f"{source}: train.epochs and train.batch_size must be >= 1, "
                          "train.lr > 0, train.workers >= 0")
    if t.get("select_metric") not in ("mIoU_ref", "mIoU"):
        raise ConfigError(f"{source}: train.select_metric must be mIoU_ref or mIoU")
    return cfg


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
