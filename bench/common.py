"""What the benchmark children share: timing, the honest peak, the child command line.

Importing this module imports no framework: each child (``bench.torch_bench``,
``bench.keras_bench``) imports exactly one. A child runs one or more entries of one framework
and writes one JSON record per entry; a failing entry is recorded with its reason, never
crashes the others.

The peak. A fraction of "peak" is only meaningful if nothing beats the peak. Every child
measures, in its own process just before its models, several large kernels (a matrix multiply
and a 3x3 convolution in PyTorch, a matrix multiply in TensorFlow), and adds the CPU's
theoretical FMA peak computed from its detected features (:func:`theoretical_peak`). The
denominator of every utilisation fraction is the largest of these, and :func:`utilisation`
refuses a fraction above 1: a model faster than the denominator means the denominator is not
the machine's peak, which is a bug of the bench, not a result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.atomic import atomic_write_json
from shared.configs import REPO_ROOT

WORK_DIR = REPO_ROOT / "datasets" / "bench"  # generated inputs (gitignored)
RUN_DIR = REPO_ROOT / "runs" / "bench"  # child logs and records (gitignored)
OK, ERROR = "ok", "error"

# The theoretical peak assumes two FMA units per core, each one vector wide (Intel Xeon
# Skylake-SP and later with two AVX-512 FMA ports, AMD Zen 2-4); a core with one port reaches
# half. AMX (amx_bf16): 1,024 bf16 multiply-adds per cycle per core (Intel's figure for
# Sapphire Rapids). The clock is the one /proc/cpuinfo reports (no turbo, which a VM hides).
FMA_UNITS = 2
AMX_BF16_MACS_PER_CYCLE = 1024


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            line = next((ln for ln in fh if ln.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.split(":", 1)[1].split()) if ":" in line else set()


def cpu_mhz() -> float | None:
    """The highest clock any core reports (MHz), or ``None``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            mhz = [float(ln.split(":", 1)[1]) for ln in fh if ln.startswith("cpu MHz")]
    except (OSError, ValueError):
        return None
    return max(mhz) if mhz else None


def native_bf16(flags: set[str] | None = None) -> tuple[bool, str]:
    """Whether the CPU computes bf16 natively (avx512_bf16 or amx_bf16), and why."""
    flags = cpu_flags() if flags is None else flags
    have = sorted(flags & {"avx512_bf16", "amx_bf16"})
    if have:
        return True, f"native bf16: {', '.join(have)}"
    return False, ("skipped: the CPU reports neither avx512_bf16 nor amx_bf16, so bf16 runs "
                   "in emulation and says nothing about bf16 hardware")


def theoretical_peak(threads: int, flags: set[str] | None = None,
                     mhz: float | None = None) -> dict[str, Any]:
    """GFLOP/s from the vector width, FMA units and clock, for ``threads`` cores."""
    flags = cpu_flags() if flags is None else flags
    mhz = cpu_mhz() if mhz is None else mhz
    if "avx512f" in flags:
        lanes, isa = 16, "avx512f"
    elif {"avx2", "fma"} <= flags:
        lanes, isa = 8, "avx2+fma"
    else:
        return {"fp32_gflops": None, "bf16_gflops": None,
                "basis": "not computable: no avx2+fma or avx512f flag"}
    if not mhz:
        return {"fp32_gflops": None, "bf16_gflops": None,
                "basis": "not computable: no clock in /proc/cpuinfo"}
    ghz_cores = mhz / 1000.0 * threads
    fp32 = lanes * 2 * FMA_UNITS * ghz_cores
    if "amx_bf16" in flags:
        bf16, bf_basis = 2 * AMX_BF16_MACS_PER_CYCLE * ghz_cores, "amx_bf16 1024 MAC/cycle"
    elif "avx512_bf16" in flags:  # vdpbf16ps: 32 bf16 pairs per 512-bit instruction
        bf16, bf_basis = 2 * 32 * FMA_UNITS * ghz_cores, "avx512_bf16 dot products"
    else:
        bf16, bf_basis = None, "no native bf16"
    return {"fp32_gflops": fp32, "bf16_gflops": bf16,
            "basis": f"{isa}: {lanes} fp32 lanes x 2 (FMA) x {FMA_UNITS} FMA units x "
                     f"{mhz:.0f} MHz x {threads} core(s); bf16: {bf_basis}"}


def best_peak(measured: dict[str, float | None], theory: float | None) -> tuple[float, str]:
    """The largest of the measured kernels and the theoretical peak, and its name."""
    cands = {k: v for k, v in measured.items() if v}
    if theory:
        cands["theoretical FMA peak"] = theory
    if not cands:
        raise ValueError("no peak could be measured or computed")
    name = max(cands, key=cands.get)
    return cands[name], name


def merge_peaks(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One peak record from the kernels timed before and after the model: each kernel's
    better figure (a machine whose clock drifts during the child is not caught low)."""
    out = {**before, "kernels": before["kernels"] + "; each timed before and after the "
                                                    "model, the better figure kept"}
    for prec in ("fp32", "bf16"):
        if prec not in before:
            continue
        late = after.get(prec, {}).get("measured_gflops", {})
        measured = {k: max(v, late.get(k) or 0.0) for k, v in
                    before[prec]["measured_gflops"].items()}
        peak, source = best_peak(measured, before["theoretical"][f"{prec}_gflops"])
        out[prec] = {"measured_gflops": measured, "peak_gflops": peak, "source": source}
    return out


def add_utilisation(name: str, variants: dict[str, dict[str, Any]], flops: int,
                    peaks: dict[str, Any]) -> None:
    """Achieved GFLOP/s (median step) and its fraction of the precision's peak, per variant."""
    for prec, t in variants.items():
        if "median_s" not in t:
            continue
        gflops = flops / t["median_s"] / 1e9
        peak = peaks[prec]
        t.update(achieved_gflops=gflops, peak_gflops=peak["peak_gflops"],
                 peak_source=peak["source"],
                 utilisation=utilisation(gflops, peak["peak_gflops"], f"{name} {prec}"))


def utilisation(achieved_gflops: float, peak_gflops: float, what: str = "") -> float:
    """``achieved / peak``; a value above 1 is refused (the peak would not be a peak)."""
    frac = achieved_gflops / peak_gflops
    if frac > 1.0:
        raise AssertionError(f"{what}: {achieved_gflops:.1f} GFLOP/s achieved exceeds the peak "
                             f"{peak_gflops:.1f} GFLOP/s: the peak estimate is wrong")
    return frac


def time_reps(fn: Callable[[], Any], warmup: int, reps: int) -> dict[str, Any]:
    """``fn`` ``warmup`` times untimed, then ``reps`` times: median and every time (s)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "best_s": min(times),
            "times_s": [round(t, 5) for t in times]}


def alternate(a: Callable[[], float], b: Callable[[], float]) -> tuple[float, float]:
    """Total seconds of ``a`` and of ``b``, run a, b, b, a (a drift of the machine weighs on
    both)."""
    ta = a()
    tb = b() + b()
    return ta + a(), tb


def loader_steps(step_s: float, quick: bool, block_s: float = 15.0) -> int:
    """Steps per timed block of the loader comparison: blocks of about ``block_s`` seconds
    (2 to 6 steps; one in quick runs), so that a block outlasts the machine's short stalls."""
    return 1 if quick else min(6, max(2, math.ceil(block_s / step_s)))


def fetch_rate(batches: Callable[[], Any], n: int) -> float:
    """Batches per second of the loader alone: a fresh iteration, its first batch (worker
    start-up) untimed, then ``n`` batches."""
    it = batches()
    next(it)
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t0)


def loader_record(steps: int, memory_s: float, disk_s: float,
                  batches: Callable[[], Any]) -> dict[str, Any]:
    """The loader comparison's figures from its two totals (:func:`alternate`), plus the
    loader's own rate (:func:`fetch_rate`)."""
    return {"steps_per_block": steps, "order": "memory, disk, disk, memory",
            "memory_steps_per_s": 2 * steps / memory_s, "disk_steps_per_s": 2 * steps / disk_s,
            "disk_vs_memory": memory_s / disk_s, "alone_batches_per_s": fetch_rate(batches, steps)}


def tiled_vs_pure(tiled: Callable[[], float], pure: Callable[[], float]) -> dict[str, Any]:
    """A tiled predictor against its model's forwards alone. ``tiled()`` runs the predictor,
    recording the forwards it makes, and returns its wall time; ``pure()`` replays the recorded
    forwards alone and returns their time. After one untimed ``tiled()`` (allocations, tracing),
    timed pure, tiled, tiled, pure."""
    tiled()
    walls: list[float] = []

    def timed() -> float:
        walls.append(tiled())
        return walls[-1]

    p, t = alternate(pure, timed)
    return {"tiled_s": t / 2, "tiled_times_s": [round(w, 3) for w in walls],
            "pure_forward_s": p / 2, "order": "pure, tiled, tiled, pure",
            "overhead": t / p - 1.0}


def set_threads(n: int) -> None:
    """Cap the BLAS/OpenMP threads of this process (before a framework is imported)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


def run_child_process(cmd: list[str], log: Path, records: dict[str, Path],
                      timeout: float) -> dict[str, dict[str, Any]]:
    """Run one bench child (a process of one framework) that writes each entry's record to
    ``records[entry]``; return the records, an ``error`` record for each one it did not write
    (naming the exit code or the timeout and the log)."""
    for path in records.values():
        path.unlink(missing_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO_ROOT))
    reason = None
    with open(log, "w", encoding="utf-8") as fh:
        try:
            rc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                env=env, timeout=timeout).returncode
            if rc:
                reason = f"child exited {rc}"
        except subprocess.TimeoutExpired:
            reason = f"child killed after {timeout:.0f} s"
    return {e: (json.loads(path.read_text(encoding="utf-8")) if path.is_file() else
                {"status": ERROR, "reason": f"{reason or 'no record written'} (log {log})"})
            for e, path in records.items()}


def child_main(entries: dict[str, dict[str, Callable[[argparse.Namespace], dict[str, Any]]]],
               description: str, argv: list[str] | None = None) -> int:
    """``python -m bench.<child> SECTION --entries a,b --out DIR``: one JSON per entry."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("section", choices=sorted(entries), help="what to measure")
    p.add_argument("--entries", required=True, help="comma-separated entry names")
    p.add_argument("--out", type=Path, required=True, help="folder for <section>.<entry>.json")
    p.add_argument("--quick", action="store_true",
                   help="the quick profile at tiny sizes (tests the bench, says nothing about "
                        "speed)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of the framework")
    p.add_argument("--batch-cap", type=int, default=2,
                   help="training batch: the profile's, capped at this (CPU memory and time)")
    args = p.parse_args(argv)
    if args.reps < 1 or args.threads < 1 or args.batch_cap < 1:
        p.error("--reps, --threads and --batch-cap must be >= 1")
    set_threads(args.threads)
    table = entries[args.section]

    def measure(name: str) -> dict[str, Any]:
        if name not in table:
            raise KeyError(f"unknown entry {name!r}; known: {sorted(table)}")
        return table[name](args)

    measure_entries(args.entries, measure, args.out, args.section)
    return 0


def measure_entries(entries: str, measure: Callable[[str], dict[str, Any]], out: Path,
                    prefix: str) -> None:
    """The child's loop: ``measure(name)`` for each comma-separated entry, its record (status,
    wall time, framework versions; an ``error`` record when it raised, so one entry's failure
    does not hide the others) written atomically to ``out/<prefix>.<name>.json``."""
    for name in [e for e in entries.split(",") if e]:
        t0 = time.perf_counter()
        try:
            rec = {"status": OK, **measure(name)}
        except Exception as exc:  # one entry's failure must not hide the others
            traceback.print_exc()
            rec = {"status": ERROR, "reason": f"{exc.__class__.__name__}: {exc}"[:600]}
        rec["wall_s"] = round(time.perf_counter() - t0, 2)
        rec["versions"] = {m: str(sys.modules[m].__version__) for m in
                           ("torch", "torchvision", "tensorflow", "keras", "numpy")
                           if m in sys.modules}
        atomic_write_json(out / f"{prefix}.{name}.json", rec)
        print(f"{prefix}/{name}: {rec['status']} {rec['wall_s']} s", flush=True)
