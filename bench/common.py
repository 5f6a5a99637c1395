"""Helpers shared by the benchmark children: timing, status records, child command lines.

Importing this module imports neither torch nor tensorflow (each child imports one framework).
A child is ``python -m bench.<module> <task> --json OUT [options]``; it writes one JSON record
(``status`` plus numbers) and exits 0 even when the measured subproject is missing, so that the
orchestrator (``bench/run.py``) can report "not built yet" instead of crashing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.atomic import atomic_write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_ROOT / "datasets" / "bench"  # generated inputs (gitignored)
RUN_DIR = REPO_ROOT / "runs" / "bench"  # child logs and outputs (gitignored)

OK = "ok"
NOT_BUILT = "not built yet"
ERROR = "error"

# data-loader configurations timed for the PyTorch subprojects: name -> what it changes from the
# subproject's own setting ("default", timed for every model; the others where asked for)
LOADER_CONFIGS = {"default": "", "workers2": "DataLoader workers 0 -> 2"}


class NotBuilt(Exception):  # noqa: N818  (a status, not an error of ours)
    """The subproject (module or function) the measurement needs does not exist yet."""


def need(module: str, attr: str | None = None) -> Any:
    """Import ``module`` (and return ``module.attr``); raise :class:`NotBuilt` if missing."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:  # ModuleNotFoundError included
        raise NotBuilt(f"{module} is not importable ({exc.__class__.__name__}: {exc})") from None
    if attr is None:
        return mod
    if not hasattr(mod, attr):
        raise NotBuilt(f"{module}.{attr} does not exist yet")
    return getattr(mod, attr)


def set_threads(n: int) -> None:
    """Cap the BLAS/OpenMP threads of this process (before a framework is imported)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def time_reps(fn: Callable[[], Any], warmup: int, reps: int) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``reps`` times; median and all times (s)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "times_s": [round(t, 5) for t in times],
            "warmup": warmup, "reps": len(times)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def ratio(num: float | None, den: float | None) -> float | None:
    """``num / den`` or ``None`` when either is missing or the denominator is zero."""
    if num is None or den is None or den == 0:
        return None
    return num / den


def child_parser(description: str, tasks: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("task", choices=tasks, help="what to measure")
    p.add_argument("--json", type=Path, required=True, help="where to write the JSON record")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the test of the bench)")
    p.add_argument("--model", default=None, help="which subproject's model (task train/loader)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of the framework")
    p.add_argument("--variants", default=None,
                   help="comma-separated variants to time (default: all for the task)")
    p.add_argument("--size", default=None, help="task-specific size override, e.g. 1024x2048")
    p.add_argument("--loader-steps", type=int, default=0,
                   help="task train: then compare the data pipeline from disk with the same "
                        "batches in memory over this many timed steps (same process, model "
                        "already warm)")
    p.add_argument("--loader-alternative", action="store_true",
                   help="with --loader-steps: also time the loader's alternative setting "
                        "(dune_vlm: 2 workers instead of 0)")
    return p


def run_child(tasks: dict[str, Callable[[argparse.Namespace], dict[str, Any]]],
              description: str, argv: list[str] | None = None) -> int:
    """Parse the child command line, run one task, write its record; exit 0 unless misused."""
    args = child_parser(description, sorted(tasks)).parse_args(argv)
    if args.reps < 1 or args.warmup < 0 or args.threads < 1:
        print("error: --reps and --threads must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    set_threads(args.threads)
    t0 = time.perf_counter()
    try:
        record = tasks[args.task](args)
        record.setdefault("status", OK)
    except NotBuilt as exc:
        record = {"status": NOT_BUILT, "reason": str(exc)}
    except Exception as exc:  # a subproject mid-change must not crash the whole benchmark
        traceback.print_exc()
        record = {"status": ERROR, "reason": f"{exc.__class__.__name__}: {exc}"[:500]}
    record["child_wall_s"] = round(time.perf_counter() - t0, 2)
    record["child_peak_rss_mb"] = peak_rss_mb()
    record["versions"] = versions()
    atomic_write_json(args.json, record)
    return 0


def versions() -> dict[str, str]:
    """Versions of the frameworks this process has imported."""
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "tensorflow", "keras", "numpy", "rasterio", "skimage"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "__version__"):
            out[name] = str(mod.__version__)
    return out


def parse_size(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    """``"1024x2048"`` -> (1024, 2048) (height, width); ``None`` -> ``default``."""
    if not text:
        return default
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like HxW, got {text!r}") from None
    return h, w
