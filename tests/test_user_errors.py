"""One kind of user error (issue 25): every error class of the project subclasses
``shared.errors.UserError`` (``shared.runs.UserError``), and ``shared.runs.cli_main`` turns a
``UserError`` into one line and exit code 2 while any other exception keeps its traceback."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib

import pytest

from shared.configs import REPO_ROOT as REPO


def packages() -> list[str]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        include = tomllib.load(fh)["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({p.rstrip("*").rstrip(".") for p in include})


def error_classes() -> dict[str, tuple[list[str], str]]:
    """``{class name: (base names, file:line)}`` of every ``*Error`` class in the packages
    (their tests left out)."""
    found: dict[str, tuple[list[str], str]] = {}
    for top in packages():
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO)
            if "tests" in rel.parts or "__pycache__" in rel.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                    bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b).split(".")[-1]
                             for b in node.bases]
                    found[f"{rel}:{node.name}"] = (bases, f"{rel}:{node.lineno}")
    return found


def test_every_error_class_is_a_user_error():
    classes = error_classes()
    by_name: dict[str, list[list[str]]] = {}
    for key, (bases, _) in classes.items():
        by_name.setdefault(key.rsplit(":", 1)[1], []).append(bases)

    def reaches_user_error(name: str, seen=()) -> bool:
        if name == "UserError":
            return True
        if name in seen or name not in by_name:
            return False  # a builtin (ValueError, RuntimeError, ...) or a library class
        return all(any(reaches_user_error(b, (*seen, name)) for b in bases)
                   for bases in by_name[name])

    assert len(classes) >= 15  # the scan found the subprojects' classes
    bad = [f"{where}: class {key.rsplit(':', 1)[1]}({', '.join(bases)})"
           for key, (bases, where) in sorted(classes.items())
           if key.rsplit(":", 1)[1] != "UserError"
           and not any(reaches_user_error(b) for b in bases)]
    assert not bad, "error classes that are not UserErrors:\n" + "\n".join(bad)


def test_shared_readers_errors_are_user_errors():
    from shared.atomic import CheckpointSetError
    from shared.configs import ConfigError
    from shared.errors import UserError
    from shared.errors import UserError as RunsUserError
    from shared.images import ImageReadError
    from shared.rasters import RasterError

    assert RunsUserError is UserError
    for cls in (ConfigError, ImageReadError, RasterError, CheckpointSetError):
        assert issubclass(cls, UserError), cls


SCRIPT = """
import sys
from shared.errors import UserError
from shared.runs import cli_main

class DataError(UserError):
    pass

def main(argv):
    kind = argv[0]
    if kind == "user":
        raise DataError("/data/a.png: truncated PNG\\n  (second line of a library message)")
    if kind == "value":
        raise ValueError("a bug that happens to be a ValueError")
    if kind == "key":
        {}["missing"]
    if kind == "oserror":
        open("/no/such/folder/file.txt")
    if kind == "runtime":
        raise RuntimeError("a bug")
    return 0

sys.exit(cli_main(main, sys.argv[1:]))
"""


def run(kind: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", SCRIPT, kind], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_main_user_error_is_one_line_exit_2():
    out = run("user")
    assert out.returncode == 2
    assert out.stderr == ("error: /data/a.png: truncated PNG (second line of a library "
                          "message)\n")
    assert "Traceback" not in out.stderr
    out = run("oserror")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "/no/such/folder/file.txt" in out.stderr


@pytest.mark.parametrize("kind,name", [("value", "ValueError"), ("key", "KeyError"),
                                       ("runtime", "RuntimeError")])
def test_cli_main_real_bug_shows_its_traceback(kind, name):
    out = run(kind)
    assert out.returncode == 1
    assert out.stderr.startswith("Traceback (most recent call last):")
    assert f"\n{name}: " in out.stderr and "in main" in out.stderr
    assert "error: " not in out.stderr.splitlines()[0]


def test_cli_main_takes_no_error_tuple():
    import inspect

    from shared.runs import cli_main

    assert list(inspect.signature(cli_main).parameters) == ["main", "argv"]
