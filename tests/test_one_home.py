"""Issue 25, item 6: one home for each small concept, checked over the whole repository.

- one ``REPO_ROOT`` (``shared.configs``), nowhere else derived from ``__file__``;
- one path rule for config values (``shared.configs.resolve_path``): ``--set data.root=x``
  names the same folder in all five trainers, whatever the current folder;
- one figure-save tail (``shared.figures.save_figure``) and one reproduce log tee
  (``shared.results.ReproduceLog``);
- one spelling of the shared imports (``from shared.<module> import ...``; the package
  re-exports nothing);
- comments and docstrings cite files that exist (the spec notes the project was written from
  are not part of the repository: cite the paper and the original code instead).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.configs import REPO_ROOT, cli_path, resolve_path

SELF = Path(__file__).resolve()


SKIP = {".git", ".venv", "datasets", "runs", "results", "__pycache__", "node_modules"}


def _files(*suffixes: str) -> list[Path]:
    """Tracked and untracked (not ignored) files of the repository with these suffixes; in a
    copy that is not a git checkout, every file outside the generated folders."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    if out.returncode == 0:
        names = out.stdout.splitlines()
    else:
        names = [p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.rglob("*")
                 if not SKIP & set(p.relative_to(REPO_ROOT).parts)]
    return [REPO_ROOT / f for f in names if f.endswith(suffixes) and (REPO_ROOT / f).is_file()]


def _offenders(pattern: str, suffixes: tuple[str, ...], allowed: set[str]) -> list[str]:
    rx = re.compile(pattern, re.M)
    hits = []
    for path in _files(*suffixes):
        rel = path.relative_to(REPO_ROOT).as_posix()
        if path == SELF or rel in allowed:
            continue
        for m in rx.finditer(path.read_text(encoding="utf-8", errors="replace")):
            line = path.read_text(encoding="utf-8", errors="replace")[:m.start()].count("\n") + 1
            hits.append(f"{rel}:{line}: {m.group(0).strip()}")
    return hits


# ------------------------------------------------------------------------ one REPO_ROOT
def test_the_repository_root_is_defined_once():
    """No module other than shared/configs.py works the repository root out of ``__file__``
    (a name bound to ``Path(__file__)...parent.parent`` or ``.parents[N]`` that ends at the
    repository root)."""
    bad = []
    rx = re.compile(r"^\s*(\w+)\s*=\s*Path\(__file__\)\.resolve\(\)\.(parent(?:\.parent)*|"
                    r"parents\[(\d)\])\s*$", re.M)
    for path in _files(".py"):
        rel = path.relative_to(REPO_ROOT)
        if rel.as_posix() == "shared/configs.py":
            continue
        text = path.read_text(encoding="utf-8")
        for m in rx.finditer(text):
            up = m.group(2).count("parent") if m.group(3) is None else int(m.group(3)) + 1
            if len(rel.parts) == up:  # e.g. pkg/mod.py with .parent.parent: the repository
                bad.append(f"{rel}: {m.group(0).strip()}")
    assert not bad, "import REPO_ROOT from shared.configs instead:\n" + "\n".join(bad)


# ------------------------------------------------------------------------ one path rule
def test_resolve_path_takes_a_relative_config_path_from_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()  # "exists here" must not win: one rule, not a guess
    assert resolve_path("data") == REPO_ROOT / "data"
    assert resolve_path(Path("a") / "b") == REPO_ROOT / "a" / "b"
    assert resolve_path(str(tmp_path)) == tmp_path
    assert resolve_path("~/x") == Path.home() / "x"
    assert resolve_path(None) is None and resolve_path("") is None
    # a path given as its own option is a shell path: from the current folder, made absolute
    assert cli_path("data") == str(tmp_path / "data")
    assert Path(cli_path(tmp_path / "y")) == tmp_path / "y"


def test_no_subproject_keeps_its_own_path_rule():
    """The old copies (crater data_root, dune/s5mars resolve_path, ice repo_path) are gone and
    no module defines another ``resolve_path``/``repo_path``."""
    bad = _offenders(r"^\s*def (resolve_path|repo_path|data_root)\(", (".py",),
                     {"shared/configs.py"})
    assert not bad, "\n".join(bad)


NAME = "no_such_root_issue25"
# (module, the --set of its data root); every trainer checks the folder before training
TRAINERS = [("crater_resunet.train", f"data.root={NAME}"),
            ("mars_cracknet.train", f"data={NAME}"),
            ("dune_vlm.train", f"data.root={NAME}"),
            ("s5mars_ssl.train_supervised", f"dataset.root={NAME}"),
            ("ice_patch_cnn.train", f"data.root={NAME}")]


def test_set_data_root_names_the_same_folder_in_every_trainer(tmp_path):
    """``--set <data root>=x`` from another folder that holds an ``x`` of its own: all five
    trainers refuse the missing ``<repository>/x`` (exit 2, one line naming it), none looks
    at ``./x``; ``--data x`` (a shell path) is ``./x``. One process per trainer (one framework
    per process), run side by side."""
    assert not (REPO_ROOT / NAME).exists()
    (tmp_path / NAME).mkdir()  # present here, empty: a cwd rule would name this one
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    runs = [[sys.executable, "-m", mod, "--set", item, "--run-dir", str(tmp_path / f"run{i}")]
            for i, (mod, item) in enumerate(TRAINERS)]
    runs.append([sys.executable, "-m", "mars_cracknet.train", "--data", NAME, "--run-dir",
                 str(tmp_path / "run_data")])
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for cmd in runs]
    outs = [(cmd[2], *p.communicate(timeout=300), p.returncode) for cmd, p in zip(runs, procs)]
    for mod, _out, err, rc in outs[:-1]:
        assert rc == 2 and "Traceback" not in err, (mod, err[-1500:])
        assert f"{REPO_ROOT / NAME}" in err and f"{tmp_path / NAME}" not in err, (mod, err)
    mod, _out, err, rc = outs[-1]
    assert rc == 2 and f"{tmp_path / NAME}" in err and "Traceback" not in err, (mod, err)


# ------------------------------------------------------------- one save tail, one tee
def test_figures_are_saved_by_the_one_helper():
    bad = _offenders(r"\.savefig\(", (".py",), {"shared/figures.py"})
    assert not bad, "use shared.figures.save_figure:\n" + "\n".join(bad)


def test_one_log_tee():
    bad = _offenders(r"^class \w*Tee\w*\b", (".py",), {"shared/results.py"})
    assert not bad, "use shared.results.ReproduceLog:\n" + "\n".join(bad)


def test_reproduce_log_tees_and_saves(tmp_path, capsys):
    from shared.results import ReproduceLog

    before = sys.stdout
    with ReproduceLog(tmp_path / "r" / "reproduce.log") as log:
        print("one")
        log.save()
        print("two")
    assert sys.stdout is before
    assert capsys.readouterr().out == "one\ntwo\n"
    assert (tmp_path / "r" / "reproduce.log").read_text() == "one\n"
    log.save()
    assert (tmp_path / "r" / "reproduce.log").read_text() == "one\ntwo\n"


def test_save_figure_writes_atomically_and_closes(tmp_path):
    from shared.figures import plot_curves, pyplot, save_figure

    plt = pyplot()
    fig = plt.figure()
    out = save_figure(fig, tmp_path / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]  # no temporary file left
    fig = plt.figure()
    save_figure(fig, tmp_path / "g.pdf")
    assert (tmp_path / "g.pdf").read_bytes()[:4] == b"%PDF"
    plot_curves(tmp_path / "c.png", [{"lines": [{"x": [1, 2], "y": [1.0, 0.5], "label": "a"}]},
                                     {"lines": []}], title="t")
    assert (tmp_path / "c.png").stat().st_size > 0 and not plt.get_fignums()


# ------------------------------------------------------------------------ one spelling
def test_shared_package_re_exports_nothing():
    tree = ast.parse((REPO_ROOT / "shared" / "__init__.py").read_text(encoding="utf-8"))
    assert all(isinstance(node, ast.Expr) for node in tree.body), \
        "shared/__init__.py holds its docstring only: import from the module"


def test_shared_names_are_imported_from_their_module():
    modules = {p.stem for p in (REPO_ROOT / "shared").glob("*.py")}
    bad = []
    for path in _files(".py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "shared" and node.level == 0:
                names = [a.name for a in node.names if a.name not in modules]
                if names:
                    bad.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {names}")
    assert not bad, "from shared.<module> import ...:\n" + "\n".join(bad)


# --------------------------------------------------------------- citations that exist
def test_no_citation_of_files_outside_the_repository():
    """``shared/specs/...`` (the notes the project was written from) is not in the repository;
    a citation of it is a dead link. Any cited ``shared/...`` file must exist."""
    rx = re.compile(r"\bshared/[\w./-]+\.(?:md|json|py|yml|yaml|npy)\b")
    bad = []
    for path in _files(".py", ".md", ".yml", ".yaml", ".toml", ".cfg", ".txt"):
        if path == SELF:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in rx.finditer(text):
            if not (REPO_ROOT / m.group(0)).exists():
                line = text[:m.start()].count("\n") + 1
                bad.append(f"{path.relative_to(REPO_ROOT)}:{line}: {m.group(0)}")
    assert not bad, "cite the paper / the original repository instead:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", ["specs"])
def test_no_specs_folder_is_read(name):
    """No code or test reads the spec folder beside the repository (it is not shipped)."""
    bad = _offenders(r"[\"']" + name + r"[\"']", (".py",), set())
    assert not bad, "\n".join(bad)


def test_user_error_has_one_spelling():
    """UserError is imported from its home, shared.errors, never through shared.runs."""
    bad = []
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] in {".venv", "datasets", "runs"} or rel == Path("shared/runs.py"):
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"from shared\.runs import[^#]*\bUserError\b", line):
                bad.append(f"{rel}:{i}")
    assert not bad, "import UserError from shared.errors: " + ", ".join(bad)
