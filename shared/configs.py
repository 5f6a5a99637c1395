"""YAML configuration files: read one mapping with an error that names the file, merge two.

Each subproject keeps its own profile rules (``inherit:``, ``_base_``, overrides); this module
holds only the part they all repeat.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: str | os.PathLike, error: type[Exception] = ValueError
                      ) -> dict[str, Any]:
    """The mapping at the top of a YAML file (an empty file gives ``{}``).

    A missing file, invalid YAML or a top level that is not a mapping raises ``error`` (the
    caller's own exception class) with a message that starts with the path.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    """A copy of ``base`` with ``over`` laid on top, nested mappings merged key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
