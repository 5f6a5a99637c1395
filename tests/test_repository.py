"""Cross-cutting checks: Makefile targets, editable install, every CLI's --help, lint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.configs import REPO_ROOT as ROOT

SUBPROJECTS = ["mars_cracknet", "dune_vlm", "s5mars_ssl", "crater_resunet", "ice_patch_cnn"]
REPRODUCE_TARGETS = ["reproduce", "reproduce-cracks", "reproduce-dunes", "reproduce-s5mars",
                     "reproduce-craters", "reproduce-ice"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.parametrize("target", ["setup", "test", "test-all", "lint", "results", "clean",
                                    "distclean", *REPRODUCE_TARGETS])
def test_make_target_exists(target):
    out = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "No rule to make target" not in out.stderr


def test_every_subproject_has_its_files():
    for sub in SUBPROJECTS:
        for name in ("__init__.py", "README.md", "requirements.txt", "requirements-gpu.txt"):
            assert (ROOT / sub / name).is_file(), f"{sub}/{name} missing"
        assert list((ROOT / sub / "tests").glob("test_*.py")), f"{sub}/tests has no tests"
        assert f"-r {sub}/requirements.txt" in (ROOT / "requirements.txt").read_text()
        assert "```bibtex" in (ROOT / sub / "README.md").read_text(), f"{sub} README: no BibTeX"


def test_editable_install_imports_from_any_directory(tmp_path):
    code = "import " + ", ".join(["shared", *SUBPROJECTS]) + "; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env=_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _entry_points() -> list[Path]:
    found = []
    for sub in ["shared", *SUBPROJECTS, "bench"]:
        for path in sorted((ROOT / sub).rglob("*.py")):
            if "tests" in path.relative_to(ROOT).parts:
                continue
            if re.search(r"^if __name__ == .__main__.:", path.read_text(encoding="utf-8"), re.M):
                found.append(path)
    return found


def _help(args: list[str], cwd: Path) -> tuple[list[str], subprocess.CompletedProcess]:
    return args, subprocess.run([sys.executable, *args, "--help"], cwd=cwd, capture_output=True,
                                text=True, env=_env(), timeout=300)


def test_every_cli_answers_help(tmp_path):
    """`python -m pkg.mod --help` from any folder, and `python pkg/train.py --help` from root."""
    entries = _entry_points()
    assert entries, "no command-line entry point found"
    jobs = []
    for path in entries:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        jobs.append((["-m", module], tmp_path))
        if path.name.startswith("train"):
            jobs.append(([str(path.relative_to(ROOT))], ROOT))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: _help(*job), jobs))
    failures = [f"{' '.join(a)}: exit {r.returncode}\n{r.stderr[-800:]}"
                for a, r in results if r.returncode != 0 or "usage" not in r.stdout.lower()]
    assert not failures, "\n\n".join(failures)


def test_lint_is_clean():
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment (make setup installs it)")
    out = subprocess.run([str(ruff), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
