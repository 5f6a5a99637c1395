"""Configuration: ``cfg.yml`` (paper profile, the schema), profiles in ``configs/`` that
inherit from it, dotted ``--set`` overrides (all through ``shared.configs``), and the
Mars-CrackNet value checks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from shared.configs import ConfigError, resolve_path
from shared.configs import load_config as _load

PACKAGE_DIR = Path(__file__).resolve().parent
PAPER_CFG = PACKAGE_DIR / "cfg.yml"
PROFILES = {"paper": PAPER_CFG, "quick": PACKAGE_DIR / "configs" / "quick.yml"}
PRETRAIN_DATA = ("mars_train", "earth_unlabelled", "unlabelled")
PAPER_PRECISION = "fp32"  # the original trains without AMP (cfg.yml precision)

__all__ = ["PROFILES", "ConfigError", "load_config", "validate"]


def load_config(profile: str | Path = "paper", overrides: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """The resolved config of a profile name or YAML path with ``{"key.sub": value}`` set."""
    return _load(profile, PROFILES, {k: v for k, v in (overrides or {}).items()
                                     if v is not None})


def _is_int(v: Any, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``cfg``; a bad value is a ConfigError naming the key and what is expected.
    The path keys (``data``, ``init_weights``) come back absolute
    (``shared.configs.resolve_path``)."""
    cfg = copy.deepcopy(cfg)
    checks = [
        ("model", cfg["model"] in ("resunet", "unet"), "resunet or unet"),
        ("mode", cfg["mode"] in ("mars", "earth", "earth_mars", "semi"),
         "mars, earth, earth_mars or semi"),
        ("finetune_mode", cfg["finetune_mode"] in ("mars", "earth", "earth_mars"),
         "mars, earth or earth_mars"),
        ("epochs", _is_int(cfg["epochs"], 1), "an integer >= 1"),
        ("width", _is_int(cfg["width"], 1) and (cfg["model"] == "unet" or cfg["width"] == 64),
         "an integer >= 1 for unet; 64 for resunet (fixed ResNet-18 widths)"),
        ("pretrain_epochs", _is_int(cfg["pretrain_epochs"], 1), "an integer >= 1"),
        ("batch_size", _is_int(cfg["batch_size"], 1), "an integer >= 1"),
        ("lr", _is_num(cfg["lr"]) and cfg["lr"] > 0, "a positive number"),
        ("pretrain_lr", _is_num(cfg["pretrain_lr"]) and cfg["pretrain_lr"] > 0,
         "a positive number"),
        ("ratio", _is_num(cfg["ratio"]) and 0 <= cfg["ratio"] <= 1, "a number in [0, 1]"),
        ("pretrain_ratio", _is_num(cfg["pretrain_ratio"]) and 0 <= cfg["pretrain_ratio"] <= 1,
         "a number in [0, 1]"),
        ("pretrain_data", cfg["pretrain_data"] in PRETRAIN_DATA, " | ".join(PRETRAIN_DATA)),
        ("crop_size", _is_int(cfg["crop_size"], 32) and cfg["crop_size"] % 32 == 0,
         "a multiple of 32, at least 32"),
        ("loss", cfg["loss"] in ("bce_dice", "focal", "iou"), "bce_dice, focal or iou"),
        ("interpolation", cfg["interpolation"] in ("lanczos", "linear", "cubic", "nearest"),
         "lanczos, linear, cubic or nearest"),
        ("threshold", _is_num(cfg["threshold"]) and 0 < float(cfg["threshold"]) < 1,
         "in (0, 1)"),
        ("val_fraction", _is_num(cfg["val_fraction"]) and 0 < cfg["val_fraction"] < 1,
         "a number in (0, 1)"),
        ("val_seed", _is_int(cfg["val_seed"], 0), "an integer >= 0"),
        ("val_list", cfg["val_list"] is None or isinstance(cfg["val_list"], str),
         "null or a list name (lists/<name>.txt)"),
        ("eval_every", _is_int(cfg["eval_every"], 1), "an integer >= 1"),
        ("num_workers", _is_int(cfg["num_workers"], 0), "an integer >= 0"),
        ("seed", _is_int(cfg["seed"], 0), "an integer >= 0"),
        ("threads", cfg.get("threads") is None or _is_int(cfg["threads"], 1),
         "null or an integer >= 1"),
        ("init_weights", cfg["init_weights"] is None or isinstance(cfg["init_weights"], str),
         "null or a weights file"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"config value {key}={cfg[key]!r} is invalid: expected {expected}")
    from shared.torch_runtime import fold_legacy_amp

    fold_legacy_amp(cfg, default=PAPER_PRECISION)  # precision; the old amp: true = bf16
    for key in ("data", "init_weights"):  # the one path rule: relative = from the repository
        if cfg.get(key):
            cfg[key] = str(resolve_path(cfg[key]))
    return cfg
