"""The one CLI vocabulary of the top README, checked per CLI from one table.

Trainers: ``--config`` (default quick), ``--run-dir``, ``--resume``, ``--overwrite``, ``--set``,
``--data``, ``--precision``. Predictors: positional inputs, ``--model PATH``, ``--out``,
``--precision``, ``--device``, ``--no-progress``. Reproduce: ``--results``, ``--record``,
``--seeds``. Every parser: ``prog`` set, every shown flag with help text that states its default,
no old spelling shown (underscores, ``--amp``, ``--quiet``, ``--checkpoint``, ...), and the
``--set`` example of a help text runs. Parsers are captured without running the CLIs (one
process per subproject, each CLI in a forked child: tests/cli_probe.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from shared.configs import REPO_ROOT as REPO

TRAINER = {"--config", "--run-dir", "--resume", "--overwrite", "--set", "--data", "--precision"}
PREDICTOR = {"--model", "--out", "--precision", "--device", "--no-progress"}
REPRODUCE = {"--results", "--record", "--seeds"}
OLD = {"--amp", "--quiet", "--checkpoint", "--input", "--input_tif", "--output_tif",
       "--weights_path", "--profile", "--save_dir", "--run_dir", "--data_root", "--data-root",
       "--text_embed_path", "--no_progress", "--model-type"}

# entry point, kind, flags it must show besides its kind's (or that it is allowed to lack)
TABLE = [
    ("cracknet-train", "trainer", set()),
    ("cracknet-predict", "predictor", set()),
    ("cracknet-analysis", "other", {"--out"}),
    ("cracknet-convert", "other", set()),
    ("cracknet-reproduce", "reproduce", {"--config", "--set"}),
    ("dunes-train", "trainer", {"--variant", "--device", "--no-progress"}),
    ("dunes-evaluate", "other", {"--model", "--data", "--out", "--device"}),
    ("dunes-map", "predictor", {"--text-embeds"}),
    ("dunes-prepare-tiles", "other", {"--no-progress"}),
    ("dunes-text-embeds", "other", {"--out"}),
    ("dunes-convert", "other", {"--text-embeds"}),
    ("dunes-reproduce", "reproduce", {"--config", "--no-progress"}),
    ("s5mars-train-semi", "trainer", {"--device", "--no-progress"}),
    ("s5mars-train-supervised", "trainer", {"--device", "--no-progress"}),
    ("s5mars-predict", "predictor", set()),
    ("s5mars-evaluate", "other", {"--model", "--data", "--device", "--out"}),
    ("s5mars-sam-masks", "other", {"--model", "--variant", "--device", "--no-progress"}),
    ("s5mars-convert", "other", set()),
    ("s5mars-reproduce", "reproduce", {"--set", "--data"}),
    ("ice-train", "trainer", {"--no-progress"}),
    ("ice-predict", "predictor", set()),
    ("ice-chunk", "other", {"--out", "--no-progress"}),
    ("ice-survey", "other", {"--out"}),
    ("ice-reproduce", "reproduce", {"--config", "--data"}),
    ("planetary-results", "other", {"--results", "--out"}),
    ("craters-train", "trainer", {"--no-progress"}),
    ("craters-predict", "predictor", set()),
    ("craters-reproduce", "reproduce", {"--config", "--set"}),
]
CRATER: list = []  # rows of crater_resunet CLIs still being changed (reported, not enforced)
KIND = {"trainer": TRAINER, "predictor": PREDICTOR, "reproduce": REPRODUCE, "other": set()}


def scripts() -> dict[str, str]:
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["scripts"]


@pytest.fixture(scope="module")
def parsers() -> dict[str, dict]:
    table = scripts()
    groups: dict[str, list[str]] = {}
    for name, _, _ in TABLE + CRATER:
        groups.setdefault(table[name].split(".")[0], []).append(table[name])
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "true"}
    found = {}
    for targets in groups.values():
        out = subprocess.run([sys.executable, str(REPO / "tests" / "cli_probe.py"), *targets],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                found[rec["target"]] = rec
    return {name: found.get(table[name]) for name, _, _ in TABLE + CRATER}


def problems(name: str, kind: str, extra: set[str], rec: dict | None) -> list[str]:
    if rec is None or rec.get("parser") is None:
        return [f"{name}: no parser captured ({(rec or {}).get('stderr', '')[-200:]})"]
    p = rec["parser"]
    shown = {f for a in p["actions"] for f in a["flags"]}
    out = []
    if not p["prog"] or p["prog"].endswith(".py") or p["prog"] in ("-c", "__main__"):
        out.append(f"{name}: prog not set ({p['prog']!r})")
    missing = (KIND[kind] | extra) - shown
    if missing:
        out.append(f"{name}: lacks {sorted(missing)}")
    old = sorted(f for f in shown if f in OLD or (f.startswith("--") and "_" in f))
    if old:
        out.append(f"{name}: shows old spellings {old} (keep them as hidden aliases)")
    for a in p["actions"]:
        label = a["flags"][0] if a["flags"] else a["dest"]
        if not a["help"].strip():
            out.append(f"{name}: {label} has no help text")
        elif (a["flags"] and not a["required"] and not a["store_true"]
              and a["default"] not in (None, False, "==SUPPRESS==", [], "")
              and "default" not in a["help"].lower()):
            out.append(f"{name}: {label} help does not give its default {a['default']!r}")
    if kind == "trainer":
        default = p["defaults"].get("default_config")
        if default is None:
            default = next((a["default"] for a in p["actions"] if "--config" in a["flags"]),
                           None)
        if not str(default).startswith("quick"):
            out.append(f"{name}: default config {default!r}, not quick")
    if kind == "predictor" and not any(a["positional"] for a in p["actions"]):
        out.append(f"{name}: inputs are not positional")
    return out


@pytest.mark.parametrize("name,kind,extra", TABLE, ids=[t[0] for t in TABLE])
def test_cli_speaks_the_vocabulary(parsers, name, kind, extra):
    assert not problems(name, kind, extra, parsers[name])




def test_every_set_example_in_a_help_text_runs(parsers):
    """``--set key=value`` examples name keys that this trainer's config has."""
    from shared.configs import load_config

    checks = {"cracknet-train": "mars_cracknet.config",
              "dunes-train": "dune_vlm.utils.config",
              "s5mars-train-semi": "s5mars_ssl.augseg.utils.config",
              "s5mars-train-supervised": "s5mars_ssl.augseg.utils.config",
              "ice-train": "ice_patch_cnn.config",
              "craters-train": "crater_resunet.config"}
    import importlib

    for name, module in checks.items():
        p = parsers[name]["parser"]
        helps = " ".join(a["help"] for a in p["actions"])
        examples = re.findall(r"e\.g\. --set ([\w.]+=[\w.]+)", helps)
        assert examples, name
        mod = importlib.import_module(module)
        profiles = getattr(mod, "PROFILE_FILES", None) or mod.PROFILES
        default = p["defaults"].get("default_config") or "quick"
        for example in examples:
            load_config(default, profiles, [example])  # raises on an unknown key


def test_reproduce_default_output_is_not_a_tracked_path(parsers):
    """``make reproduce-<paper>`` (no --results, no --record) writes the git-ignored
    results/local/<paper>/, never the committed record results/<paper>/ (issue 29)."""
    from shared.results import PAPERS, REPO_ROOT, results_dir

    for name in ("cracknet-reproduce", "dunes-reproduce", "s5mars-reproduce", "ice-reproduce"):
        results = next(a for a in parsers[name]["parser"]["actions"] if "--results" in a["flags"])
        assert results["default"] is None, name  # resolved by shared.results.results_dir
    for paper in PAPERS:
        local = results_dir(paper)
        assert local.relative_to(REPO_ROOT).parts == ("results", "local", paper)
        assert results_dir(paper, record=True) == REPO_ROOT / "results" / paper
        try:
            tracked = subprocess.run(["git", "ls-files", "--", str(local)], cwd=REPO_ROOT,
                                     capture_output=True, text=True, check=True).stdout
            ignored = subprocess.run(["git", "check-ignore", "-q", str(local / "summary.json")],
                                     cwd=REPO_ROOT).returncode == 0
        except (OSError, subprocess.CalledProcessError):
            pytest.skip("not a git checkout")
        assert tracked == "" and ignored, paper


def test_precision_auto_follows_the_cpu_flags(tmp_path):
    from shared.precision import cpu_has_native_bf16, resolve_precision

    with_bf16, without = tmp_path / "a", tmp_path / "b"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert cpu_has_native_bf16(str(with_bf16)) and not cpu_has_native_bf16(str(without))
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cuda") == "bf16"
    assert resolve_precision("auto", "cuda:0") == "fp32"  # GPUs: mixed precision is explicit
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(ValueError):
        resolve_precision("fp16", "cpu")


def test_progress_bars_only_on_a_terminal(monkeypatch):
    import io

    from shared.cli import progress_enabled

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("CI", raising=False)
    assert progress_enabled(False, [Tty(), Tty()])
    assert not progress_enabled(True, [Tty(), Tty()])
    assert not progress_enabled(False, [Tty(), io.StringIO()])  # a log file or a pipe
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled(False, [Tty(), Tty()])
