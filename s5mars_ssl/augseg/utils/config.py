"""Profiles, the config reader (``shared.configs``, which also holds the one path rule,
``resolve_path``) and value checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.configs import ConfigError
from shared.configs import load_config as _load

PACKAGE_DIR = Path(__file__).resolve().parents[2]


PROFILES = {
    "paper": PACKAGE_DIR / "exps" / "s5mars" / "config_semi_mix.yaml",
    "paper_semi": PACKAGE_DIR / "exps" / "s5mars" / "config_semi.yaml",
    "paper_supervised": PACKAGE_DIR / "exps" / "s5mars" / "config_supervised.yaml",
    "quick": PACKAGE_DIR / "exps" / "quick" / "full.yaml",
    **{f"quick_{n}": PACKAGE_DIR / "exps" / "quick" / f"{n}.yaml"
       for n in ("supervised", "mean_teacher", "augin", "sammix", "full")},
}


def load_config(spec: str | os.PathLike, sets=None) -> dict:
    """A profile name (``PROFILES``) or YAML path through the one config reader
    (``shared.configs.load_config``: ``_base_``/``inherit`` chains, dotted ``--set``, unknown
    keys are an error in YAML files and overrides alike; the schema is the paper config)."""
    return _load(spec, PROFILES, sets)


def get(cfg: dict, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def validate(cfg: dict) -> None:
    """Catch the common mistakes with a message naming the key."""
    if cfg.get("mode") not in ("supervised", "semi"):
        raise ConfigError(f"config: mode must be supervised or semi, got {cfg.get('mode')!r}")
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
    d = cfg["dataset"]
    if d.get("resize", "long_side") not in ("long_side", "square"):
        raise ConfigError(f"config: dataset.resize must be long_side or square, got "
                          f"{d.get('resize')!r}")
    for m in [d.get("eval_mode", "whole"), *d.get("eval_extra_modes", [])]:
        if m not in ("whole", "center_crop", "sliding"):
            raise ConfigError(f"config: evaluation mode must be whole, center_crop or sliding, "
                              f"got {m!r}")
