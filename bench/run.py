"""``make bench``: training-step utilisation, data loaders and tiled inference of every paper,
and scenes per minute in-process and on a Dask ``LocalCluster`` (``bench.cluster_bench``).

Each measurement runs in a child process of one framework (``bench.torch_bench``,
``bench.keras_bench``: torch, TensorFlow and segment-anything never share a process). Every
headline is a ratio of two figures measured in the same child: a step's FLOP/s against the
honest peak of that process (see ``bench/common.py``), a loader-fed step against the same
batches in memory, a tiled prediction against the pure forward over the same windows. Writes
``results/bench.json`` and ``BENCHMARKS.md``.

``--quick`` runs every entry with the subprojects' quick profiles at tiny sizes, one child per
framework and section (the test of the bench; its numbers say nothing about speed).
``--sections``/``--only`` run a part; with ``--merge`` the part replaces its entries in the
existing record (each entry's ratios still come from one child).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    OK,
    REPO_ROOT,
    RUN_DIR,
    cpu_flags,
    cpu_mhz,
    native_bf16,
    run_child_process,
)
from bench.report import render_markdown
from shared.atomic import atomic_write_json, atomic_write_text
from shared.results import machine_info

# section -> framework child -> entries
PLAN = {
    "train": {"torch_bench": ("mars_cracknet", "dune_vlm", "s5mars_ssl"),
              "keras_bench": ("crater_resunet", "ice_patch_cnn")},
    "tiling": {"torch_bench": ("dune_vlm", "mars_cracknet", "s5mars_ssl"),
               "keras_bench": ("crater_resunet",)},
    "scenes": {"cluster_bench": ("ice_patch_cnn",)},
}
SECTIONS = tuple(PLAN)
FORMAT = 2  # results/bench.json layout (1: the bench before issue 18)
TARGETS = {"disk_vs_memory": 0.9, "tile_overhead": 0.10, "cluster_overhead": 0.10}


def plan(quick: bool, sections: list[str], only: set[str] | None = None
         ) -> list[tuple[str, str, list[str]]]:
    """(section, child module, entries) per child: one per entry, or per framework in quick."""
    jobs = []
    for section in sections:
        for module, entries in PLAN[section].items():
            keep = [e for e in entries if not only or e in only]
            if quick and keep:
                jobs.append((section, module, keep))
            else:
                jobs += [(section, module, [e]) for e in keep]
    return jobs


def run_child(section: str, module: str, entries: list[str], out: Path, args) -> dict:
    """Run one child; return its records (an ``error`` record per entry it did not write)."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{section}.{'+'.join(entries)}.log"
    cmd = [sys.executable, "-m", f"bench.{module}", section, "--entries", ",".join(entries),
           "--out", str(out), "--reps", str(args.reps), "--threads", str(args.threads),
           "--batch-cap", str(args.batch_cap), *(["--quick"] if args.quick else [])]
    return run_child_process(cmd, log, {e: out / f"{section}.{e}.json" for e in entries},
                             args.child_timeout)


def check(result: dict[str, Any]) -> list[str]:
    """Every utilisation at most 1 and equal to achieved / peak; targets marked per entry."""
    problems = []
    for name, rec in result.get("train", {}).items():
        if rec.get("status") != OK:
            continue
        for prec, v in rec["variants"].items():
            if "skipped" in v:
                continue
            want = rec["flops_per_step"] / v["median_s"] / 1e9 / v["peak_gflops"]
            if not (v["utilisation"] <= 1.0 and abs(v["utilisation"] - want) <= 1e-9 * want):
                problems.append(f"train/{name} {prec}: utilisation {v['utilisation']} is not "
                                f"achieved / peak = {want} <= 1")
        rec["loader"]["meets_target"] = rec["loader"]["disk_vs_memory"] >= \
            TARGETS["disk_vs_memory"]
    for rec in result.get("tiling", {}).values():
        if rec.get("status") == OK:
            rec["meets_target"] = rec["overhead"] <= TARGETS["tile_overhead"]
    for rec in result.get("scenes", {}).values():
        if rec.get("status") == OK:
            rec["meets_target"] = rec["overhead_local_1"] <= TARGETS["cluster_overhead"]
    return problems


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="planetary-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="quick profiles at tiny sizes, one child per framework (the test of "
                        "the bench; its numbers say nothing about speed)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--only", default=None, help="comma-separated entries, e.g. dune_vlm")
    p.add_argument("--merge", action="store_true",
                   help="replace only the entries run now in the existing JSON")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (3; quick 1)")
    p.add_argument("--threads", type=int, default=None, help="threads per child (2; quick 1)")
    p.add_argument("--batch-cap", type=int, default=None,
                   help="training batch: the profile's, capped at this (default 2; quick 1)")
    p.add_argument("--child-timeout", type=float, default=1800.0,
                   help="seconds before a child is killed and reported (default: 1800)")
    p.add_argument("--json", type=Path, default=None,
                   help="output JSON (default results/bench.json; quick: runs/bench/quick.json)")
    p.add_argument("--markdown", type=Path, default=None,
                   help="output markdown (default BENCHMARKS.md; quick: runs/bench/quick.md)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if bad := [s for s in sections if s not in SECTIONS]:
        print(f"error: unknown section(s) {bad}; expected some of {list(SECTIONS)}",
              file=sys.stderr)
        return 2
    for key, quick_default, default in (("reps", 1, 3), ("threads", 1, 2), ("batch_cap", 1, 2)):
        if getattr(args, key) is None:
            setattr(args, key, quick_default if args.quick else default)
    if min(args.reps, args.threads, args.batch_cap) < 1:
        print("error: --reps, --threads and --batch-cap must be >= 1", file=sys.stderr)
        return 2
    tag = "quick" if args.quick else "full"
    json_out = args.json or (RUN_DIR / "quick.json" if args.quick
                             else REPO_ROOT / "results" / "bench.json")
    md_out = args.markdown or (RUN_DIR / "quick.md" if args.quick
                               else REPO_ROOT / "BENCHMARKS.md")
    only = {e.strip() for e in args.only.split(",") if e.strip()} if args.only else None
    known = {e for s in sections for entries in PLAN[s].values() for e in entries}
    if only is not None and (not only or only - known):  # issue 27: a typo ran nothing and
        print(f"error: --only: unknown entr(ies) {sorted(only - known) or [args.only]} in "
              f"sections {sections}; expected some of {sorted(known)}",  # replaced the report
              file=sys.stderr)
        return 2
    jobs = plan(args.quick, sections, only)
    if not jobs:
        print("error: nothing to run (no entry selected)", file=sys.stderr)
        return 2
    from shared.runs import check_output_dir

    # an output under a regular file: one line (cli), not a traceback at the end of the run
    check_output_dir(json_out.parent)
    check_output_dir(md_out.parent)
    started = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"bench ({tag}): {len(jobs)} children, logs in {RUN_DIR / tag}", flush=True)
    t0 = time.perf_counter()
    records: dict[str, dict[str, Any]] = {s: {} for s in sections}
    # quick: the torch and Keras children of a section run side by side (1 thread each)
    width = 2 if args.quick else 1
    for k in range(0, len(jobs), width):
        batch = jobs[k:k + width]
        with ThreadPoolExecutor(max_workers=width) as pool:
            done = list(pool.map(lambda j: (j[0], run_child(*j, RUN_DIR / tag, args)), batch))
        for section, recs in done:
            for e, r in recs.items():
                r["measured"] = started
                records[section][e] = r
                print(f"  {section:7s} {e:15s} {r['status']:6s} {r.get('wall_s', 0):7.1f} s  "
                      f"{r.get('reason', '')[:200]}", flush=True)
    flags = cpu_flags()
    meta = {"format": FORMAT, "quick": args.quick, "date": started,
            "wall_s": round(time.perf_counter() - t0, 1),
            "machine": {**machine_info(), "cpu_mhz": cpu_mhz(), "bf16": native_bf16(flags)[1],
                        "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx",
                                                                              "fma")))},
            "threads": args.threads, "reps": args.reps, "batch_cap": args.batch_cap,
            "targets": TARGETS, "command": "python -m bench.run " + " ".join(
                sys.argv[1:] if argv is None else argv)}
    result: dict[str, Any] = {"meta": meta, **records}
    if args.merge and json_out.is_file():
        old = json.loads(json_out.read_text(encoding="utf-8"))
        if old.get("meta", {}).get("format") != FORMAT:
            print(f"error: {json_out} was written by an older bench (no format {FORMAT}); "
                  "run without --merge", file=sys.stderr)
            return 2
        if old["meta"].get("quick") != args.quick:
            print(f"error: {json_out} holds a {'quick' if old['meta']['quick'] else 'full'} "
                  "run; --merge needs the same mode", file=sys.stderr)
            return 2
        for s in SECTIONS:
            old.setdefault(s, {}).update(records.get(s, {}))
        old["meta"]["merged"] = [*old["meta"].get("merged", []), meta]
        result = old
    problems = check(result)
    atomic_write_json(json_out, result)
    atomic_write_text(md_out, render_markdown(result, json_out))
    print(f"wrote {json_out} and {md_out} ({meta['wall_s']} s)")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


def cli(argv: list[str] | None = None) -> int:
    """``main`` with the project's error contract (a user error: one line, exit 2)."""
    from shared.runs import cli_main

    return cli_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
