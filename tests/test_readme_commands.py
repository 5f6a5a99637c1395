"""Every command the READMEs show answers ``--help`` from a copy of the repository with nothing
beside it (no ``../shared``), without importing torch or TensorFlow, and is written in a form
that runs after ``make setup`` (``.venv/bin/python -m ...`` or an entry point)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.configs import REPO_ROOT as REPO

READMES = ["README.md", "mars_cracknet/README.md", "dune_vlm/README.md", "s5mars_ssl/README.md",
           "crater_resunet/README.md", "ice_patch_cnn/README.md"]
PACKAGES = ("mars_cracknet", "dune_vlm", "s5mars_ssl", "crater_resunet", "ice_patch_cnn",
            "shared", "bench")
# an absolute path into a checkout's generated folders, on any machine
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:home|work|Users|root|srv|mnt)/[^\s\"']*?/"
                          r"(?:datasets|runs|results)/")
MODULE = re.compile(r"(?:python[\d.]*|torchrun[^`\n]*?)\s+-m\s+([a-z_][a-z0-9_.]*)")
SCRIPT = re.compile(r"python[\d.]*\s+((?:" + "|".join(PACKAGES) + r")/[a-z0-9_/]+)\.py")


def entry_points() -> dict[str, str]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["scripts"]


def readme_commands() -> dict[str, set[str]]:
    """``{target: READMEs}``: a target is ``pkg.module`` or an entry point's ``pkg.mod:func``."""
    scripts = entry_points()
    entry = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, scripts)) + r")(?![\w-])")
    found: dict[str, set[str]] = {}
    for name in READMES:
        text = (REPO / name).read_text(encoding="utf-8")
        targets = {m for m in MODULE.findall(text) if m.split(".")[0] in PACKAGES}
        targets |= {s.replace("/", ".") for s in SCRIPT.findall(text)}
        targets |= {scripts[e] for e in entry.findall(text)}
        for t in targets:
            found.setdefault(t, set()).add(name)
    return found


def test_readmes_name_commands_of_every_subproject():
    found = readme_commands()
    for pkg in PACKAGES[:5]:
        assert any(t.startswith(pkg + ".") for t in found), pkg
    assert len(found) >= 30


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository's source (tracked and new files, no results, no venv) in a folder with
    nothing beside it."""
    root = tmp_path_factory.mktemp("alone") / "clone"
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()]
    for rel in listed:
        if not rel or rel.startswith(("results/", ".venv/")) or not (REPO / rel).is_file():
            continue
        if rel.split("/")[0] not in (*PACKAGES, "pyproject.toml", "README.md", "tests"):
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, root / rel)
    assert not (root.parent / "shared").exists()
    return root


def probe(root: Path, targets: list[str]) -> list[dict]:
    """``tests/cli_probe.py`` run from ``root``: one process, each target in a forked child."""
    env = {**os.environ, "PYTHONPATH": str(root), "CI": "true"}
    out = subprocess.run([sys.executable, str(root / "tests" / "cli_probe.py"), *targets],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    records = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    done = {r["target"] for r in records}
    return records + [{"target": t, "help_exit": None, "usage": False, "heavy": [],
                       "stderr": out.stderr[-600:], "parser": None}
                      for t in targets if t not in done]


def by_package(targets) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for t in sorted(targets):
        groups.setdefault(t.split(".")[0], []).append(t)
    return list(groups.values())


def test_every_readme_command_answers_help_from_a_lone_clone(clone):
    found = readme_commands()
    with ThreadPoolExecutor(max_workers=2) as pool:
        records = [r for group in pool.map(lambda g: probe(clone, g), by_package(found))
                   for r in group]
    bad = []
    for r in records:
        if r["help_exit"] != 0 or not r["usage"]:
            bad.append(f"{r['target']} ({', '.join(sorted(found[r['target']]))}): --help exit "
                       f"{r['help_exit']}: {r['stderr'].strip()[-300:]}")
        elif r["heavy"]:
            bad.append(f"{r['target']}: --help imported {r['heavy']}")
    assert not bad, "\n".join(bad)


def test_entry_points_name_real_functions():
    import importlib.util

    for name, target in entry_points().items():
        module, _, func = target.partition(":")
        path = REPO / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{name}: {path} missing"
        assert re.search(rf"^def {func}\(", path.read_text(encoding="utf-8"), re.M), \
            f"{name}: {module} has no top-level {func}()"
        assert importlib.util.find_spec(module.split(".")[0]) is not None


@pytest.mark.parametrize("readme", READMES)
def test_readme_commands_run_after_make_setup(readme):
    """A bare ``python -m`` needs an activated venv the README never mentions: commands use
    ``.venv/bin/python`` (or ``.venv/bin/torchrun``) or an entry point."""
    bare = []
    for i, line in enumerate((REPO / readme).read_text(encoding="utf-8").splitlines(), 1):
        for m in re.finditer(r"(?<![\w/.])(python[\d.]*|torchrun)\s+(-m\s+[a-z_][\w.]*|\S+\.py)",
                             line):
            if m.group(2).split()[-1] in ("venv", "pip") or m.group(1).startswith("python3."):
                continue
            bare.append(f"{readme}:{i}: {line.strip()[:100]}")
    assert not bare, "\n".join(bare)


def test_make_help_lists_every_target():
    """Every documented Makefile target (``name: ... ## what``) appears in ``make help``,
    reproduce-s5mars (a digit in the name) included."""
    if shutil.which("make") is None or shutil.which("column") is None:
        pytest.skip("make or column not installed")
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = re.findall(r"^([a-z0-9-]+):.*## ", text, re.M)
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60).stdout
    shown = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert "reproduce-s5mars" in targets and set(targets) <= shown, set(targets) - shown


def test_no_absolute_machine_paths_in_committed_files():
    """Committed files (markdown aside) name no path of the machine that made them; records
    are written repository-relative (shared.results.relativize_paths)."""
    try:
        files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    prefix = str(REPO) + "/"
    found = []
    for rel in files:
        path = REPO / rel
        if not rel or rel.endswith(".md") or not path.is_file() or path.stat().st_size > 2e6:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary
        if prefix in text or MACHINE_PATH.search(text):
            found.append(rel)
    assert not found, found
