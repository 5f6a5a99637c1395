"""The one config reader: YAML profiles with inheritance, dotted ``--set`` overrides, and an
error for every unknown key.

A config is a profile name (a key of the subproject's ``profiles`` mapping) or a path to a YAML
file. A file may name its parent with ``inherit:`` (or AugSeg's ``_base_:``): a profile name or
a path relative to the file's folder. The *root* of the chain (the file without a parent) is the
schema: every key that a child file or a ``--set`` gives must exist there (nested keys too),
so a typo is an error naming the file and the key, never a silently created setting.

One path rule for every path-valued config key of the five subprojects (``resolve_path``): a
relative path in a config (a profile, a user's YAML file or a ``--set key=value``) is taken
from the repository root (``REPO_ROOT``), so ``--set data.root=x`` names the same folder in
every subproject and from whatever folder the command runs; ``~`` is expanded and an absolute
path is kept. The reader leaves the values as written (a saved ``config.yaml`` stays portable);
the subprojects resolve them with ``resolve_path`` where they use them. A path given as its own
command-line option (``--data DIR``) is an ordinary shell path, taken from the current folder,
and is made absolute (``cli_path``) before it becomes a config value.

Each subproject keeps only its own validation of values on top of this.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from shared.errors import UserError

PARENT_KEYS = ("inherit", "_base_")
REPO_ROOT = Path(__file__).resolve().parent.parent  # the one definition; imported elsewhere


def resolve_path(value: str | os.PathLike | None) -> Path | None:
    """A path-valued config setting as a path: ``~`` expanded, an absolute path kept, a
    relative one taken from the repository root; ``None`` (or an empty string: unset) stays
    ``None``."""
    if value is None or str(value) == "":
        return None
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else REPO_ROOT / path


def cli_path(value: str | os.PathLike) -> str:
    """A path given as a command-line option, made absolute from the current folder (as a shell
    reads it), for use as a config value (``--data DIR`` -> ``--set data.root=/abs/DIR``)."""
    return str(Path(os.path.expanduser(str(value))).absolute())


class ConfigError(UserError):
    """A config file, profile name or override is invalid; the message names it."""


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
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return data


def yaml_problem(exc: BaseException) -> str:
    """A YAML parser error in one line: what is wrong and where (``line L, column C``)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if problem is None:
        return " ".join(str(exc).split())[:200]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


# Keys that count something: a value below 1 means nothing (checked when the schema's own value
# is a positive integer).
COUNT_KEYS = frozenset({
    "batch_size", "epochs", "iterations", "num_classes", "n_classes", "crop_size", "patch_size",
    "tile_size", "chunk_size", "size", "max_epochs", "total_iters", "image_size", "input_size",
    "base_size", "width", "seeds", "stride"})
# Keys that must be positive numbers when the schema's value is one.
POSITIVE_KEYS = frozenset({"lr", "learning_rate", "base_lr", "scale", "input_scale"})


def check_value(key: str, value: Any, schema_value: Any, source: str = "--set") -> None:
    """``value`` may replace ``schema_value`` at ``key``: same kind (a number for a number, a
    boolean for a boolean; ``null`` always), finite, and at least 1
    for a count (``COUNT_KEYS``) or positive for a rate (``POSITIVE_KEYS``)."""
    def bad(what: str) -> ConfigError:
        return ConfigError(f"{source}: {key}={value!r}: {what}")

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    leaf = key.rsplit(".", 1)[-1]
    if value is None:
        return
    if isinstance(schema_value, bool):
        if not isinstance(value, bool):
            raise bad("expected true or false")
    elif number(schema_value):
        if not number(value):
            raise bad(f"expected a number (like {schema_value!r})")
        if isinstance(value, float) and not math.isfinite(value) and (
                not isinstance(schema_value, float) or math.isfinite(schema_value)):
            raise bad("expected a finite number")
        if isinstance(schema_value, int) and schema_value >= 1 and leaf in COUNT_KEYS:
            if value != int(value) or value < 1:
                raise bad("expected a whole number of at least 1")
        if schema_value > 0 and leaf in POSITIVE_KEYS and not value > 0:
            raise bad("expected a positive number")
    elif isinstance(value, float) and not math.isfinite(value):
        raise bad("expected a finite number")
    elif number(value) and leaf in COUNT_KEYS and value < 0:  # unset (null) in the schema
        raise bad("expected a whole number of at least 0")


def check_values(data: Mapping, schema: Mapping, source: str, prefix: str = "") -> None:
    """``check_value`` for every leaf of ``data`` that the ``schema`` also has."""
    for key, value in data.items():
        if key not in schema:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(schema[key], Mapping):
            check_values(value, schema[key], source, name + ".")
        else:
            if isinstance(schema[key], (int, float)) and not isinstance(schema[key], bool):
                value = data[key] = _number_or_self(value)  # type: ignore[index]
            check_value(name, value, schema[key], source)


def deep_merge(base: dict, over: dict) -> dict:
    """A copy of ``base`` with ``over`` laid on top, nested mappings merged key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def unknown_keys(schema: Mapping, data: Mapping, prefix: str = "") -> list[str]:
    """Dotted names of the keys of ``data`` that ``schema`` does not have (nested)."""
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in schema:
            out.append(name)
        elif isinstance(value, Mapping) and isinstance(schema[key], Mapping) and schema[key]:
            out += unknown_keys(schema[key], value, name + ".")
    return out


def _profile_path(spec: str | os.PathLike, profiles: Mapping[str, Path]) -> Path:
    if str(spec) in profiles:
        return Path(profiles[str(spec)])
    path = Path(spec)
    if path.suffix.lower() not in (".yml", ".yaml") and not path.exists():
        raise ConfigError(f"{spec}: neither a profile ({', '.join(sorted(profiles))}) "
                          "nor a YAML file")
    return path


def _chain(path: Path, profiles: Mapping[str, Path]) -> list[tuple[Path, dict]]:
    """[(root file, mapping), ..., (path, mapping)], parents first."""
    layers: list[tuple[Path, dict]] = []
    seen: set[Path] = set()
    while True:
        resolved = path.resolve()
        if resolved in seen:
            raise ConfigError(f"{path}: inheritance loop")
        seen.add(resolved)
        data = read_yaml_mapping(path, ConfigError)
        parent = None
        for key in PARENT_KEYS:
            if key in data:
                parent = data.pop(key)
        layers.append((path, data))
        if parent is None:
            return layers[::-1]
        if str(parent) in profiles:
            path = Path(profiles[str(parent)])
        else:
            path = (path.parent / str(parent))


def parse_set(items: Iterable[str] | None) -> dict[str, Any]:
    """``["train.epochs=3", "lr=1e-3"]`` -> ``{"train.epochs": 3, "lr": 0.001}`` (YAML values)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. train.epochs=3)")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r}: empty key")
        try:
            out[key] = _number_or_self(yaml.safe_load(value))
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML "
                              f"({yaml_problem(exc)})") from None
    return out


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number_or_self(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a command line means the number."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and "." not in value and "e" not in \
            value.lower() else number
    return value


def set_dotted(cfg: dict, key: str, value: Any, schema: Mapping | None = None,
               source: str = "--set") -> None:
    """``cfg["a"]["b"] = value`` for ``key="a.b"``; a key unknown to ``schema`` is an error."""
    schema = cfg if schema is None else schema
    parts = key.split(".")
    node, known = cfg, schema
    for i, part in enumerate(parts):
        if not isinstance(known, Mapping) or part not in known:
            where = ".".join(parts[:i]) or "the top level"
            options = ", ".join(sorted(known)) if isinstance(known, Mapping) else "none"
            raise ConfigError(f"{source}: unknown config key {key!r} "
                              f"(no {part!r} under {where}; known: {options})")
        if i == len(parts) - 1:
            check_value(key, value, known[part], source)
            node[part] = value
        else:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node, known = node[part], known[part]


def load_config(spec: str | os.PathLike, profiles: Mapping[str, str | os.PathLike],
                sets: Mapping[str, Any] | Iterable[str] | None = None,
                ) -> dict[str, Any]:
    """The resolved config of ``spec`` (profile name or YAML path) with ``sets`` applied.

    ``sets`` is ``{"a.b": value}`` or a list of ``"a.b=value"`` strings. Raises ``ConfigError``
    naming the file (or ``--set``) for a missing file, bad YAML or any unknown key.
    """
    profiles = {k: Path(v) for k, v in profiles.items()}
    layers = _chain(_profile_path(spec, profiles), profiles)
    schema = layers[0][1]
    cfg = copy.deepcopy(schema)
    for path, data in layers[1:]:
        bad = unknown_keys(schema, data)
        if bad:
            raise ConfigError(f"{path}: unknown config key(s) {', '.join(bad)} "
                              f"(not in {layers[0][0].name})")
        check_values(data, schema, str(path))
        cfg = deep_merge(cfg, data)
    if sets is not None and not isinstance(sets, Mapping):
        sets = parse_set(sets)
    for key, value in (sets or {}).items():
        set_dotted(cfg, key, value, schema)
    return cfg


def diff_keys(a: Mapping, b: Mapping, prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two nested mappings."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        name = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += diff_keys(va, vb, name + ".")
        elif va != vb:
            out.append(name)
    return out
