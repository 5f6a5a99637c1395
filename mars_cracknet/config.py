"""Configuration: ``cfg.yml`` (paper profile), profiles in ``configs/``, command-line overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from shared.configs import read_yaml_mapping

PACKAGE_DIR = Path(__file__).resolve().parent
PAPER_CFG = PACKAGE_DIR / "cfg.yml"
PROFILES = {"paper": PAPER_CFG, "quick": PACKAGE_DIR / "configs" / "quick.yml"}


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names it."""


def load_config(profile: str | Path = "paper", overrides: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """``cfg.yml``, then the profile file (a name in PROFILES or a path), then ``overrides``."""
    cfg = read_yaml_mapping(PAPER_CFG, ConfigError)
    path = PROFILES.get(str(profile), Path(profile))
    if path != PAPER_CFG:
        cfg.update(read_yaml_mapping(path, ConfigError))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in cfg:
            raise ConfigError(f"unknown config key {key!r} (known: {', '.join(sorted(cfg))})")
        cfg[key] = value
    return cfg


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=3", "lr=1e-3"]`` -> ``{"epochs": 3, "lr": 0.001}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    checks = [
        ("model", cfg["model"] in ("resunet", "unet"), "resunet or unet"),
        ("mode", cfg["mode"] in ("mars", "earth", "earth_mars", "semi"),
         "mars, earth, earth_mars or semi"),
        ("finetune_mode", cfg["finetune_mode"] in ("mars", "earth", "earth_mars"),
         "mars, earth or earth_mars"),
        ("epochs", isinstance(cfg["epochs"], int) and cfg["epochs"] >= 1, "an integer >= 1"),
        ("width", isinstance(cfg["width"], int) and cfg["width"] >= 1
         and (cfg["model"] == "unet" or cfg["width"] == 64),
         "an integer >= 1 for unet; 64 for resunet (fixed ResNet-18 widths)"),
        ("pretrain_epochs", isinstance(cfg["pretrain_epochs"], int)
         and cfg["pretrain_epochs"] >= 1, "an integer >= 1"),
        ("batch_size", isinstance(cfg["batch_size"], int) and cfg["batch_size"] >= 1,
         "an integer >= 1"),
        ("lr", isinstance(cfg["lr"], (int, float)) and cfg["lr"] > 0, "a positive number"),
        ("ratio", isinstance(cfg["ratio"], (int, float)) and 0 <= cfg["ratio"] <= 1,
         "a number in [0, 1]"),
        ("crop_size", isinstance(cfg["crop_size"], int) and cfg["crop_size"] >= 32
         and cfg["crop_size"] % 32 == 0, "a multiple of 32, at least 32"),
        ("loss", cfg["loss"] in ("bce_dice", "focal", "iou"), "bce_dice, focal or iou"),
        ("threshold", 0 < float(cfg["threshold"]) < 1, "in (0, 1)"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"config value {key}={cfg[key]!r} is invalid: expected {expected}")
    return cfg
