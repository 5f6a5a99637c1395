"""``make bench``: throughput, hardware utilisation and memory of every pipeline, in one run.

Runs every measurement in its own child process (``bench.torch_bench``, ``bench.keras_bench``,
``bench.io_bench``; torch, TensorFlow and segment-anything never share a process), reads each
child's peak RSS from ``os.wait4``, derives every headline as a ratio of two figures measured in
this same run, and writes ``results/bench.json`` and ``BENCHMARKS.md``.

A subproject that is not importable yet is reported as "not built yet"; any other failure of a
child is reported as "error" with its reason and log, never as a crash of the whole benchmark.
``--quick`` uses tiny sizes (for the test of the bench); its numbers say nothing about speed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ERROR, LOADER_CONFIGS, NOT_BUILT, OK, REPO_ROOT, RUN_DIR, ratio
from bench.report import render_markdown
from shared.atomic import atomic_write_json, atomic_write_text
from shared.results import machine_info

TORCH_TRAIN = ("mars_cracknet", "dune_vlm", "s5mars_ssl", "reference")
KERAS_TRAIN = ("crater_resunet", "ice_patch_cnn")
SECTIONS = ("training", "input_pipeline", "rasters", "crack_analysis", "tests")

# Targets from the issue (the ratios BENCHMARKS.md checks).
TARGETS = {
    "fp32_frac_dense": 0.50,  # dense conv nets: achieved / fp32 matmul peak
    "fp32_frac_other": 0.30,  # transformer and separable-conv models
    "bf16_speedup": 1.5,  # bf16 autocast step vs fp32 step
    "disk_vs_memory": 0.9,  # training steps/s fed from disk vs from memory
    "tile_overhead": 0.15,  # inference_tile wall / pure forward - 1
    "chunk_vs_bare": 0.8,  # chunk.py MB/s vs bare rasterio MB/s
}


@dataclass
class Job:
    section: str
    key: str
    module: str
    task: str
    args: list[str] = field(default_factory=list)
    timeout: float = 600.0


# --quick measures a subset (one child per code path, tiny sizes) to stay near a minute;
# --quick --every runs every child of the full run at the tiny sizes.
QUICK_SUBSET = {("training", "reference"), ("training", "mars_cracknet"),
                ("training", "ice_patch_cnn"), ("input_pipeline", "reference"),
                ("input_pipeline", "ice_patch_cnn"), ("rasters", "dune_overhead"),
                ("rasters", "ice_chunk"), ("rasters", "ice_rss_small"),
                ("rasters", "ice_rss_large"), ("rasters", "cracknet_tiled"),
                ("crack_analysis", "analyze_mask")}


def plan(quick: bool, reps: int, warmup: int, sections: list[str], every: bool = False
         ) -> list[Job]:
    """Every child to run, in order."""
    r = ["--reps", str(reps), "--warmup", str(warmup)]
    one = ["--reps", "1", "--warmup", "0"]
    q = ["--quick"] if quick else []
    jobs: list[Job] = []
    # with both sections, each training child also runs the input-pipeline comparison on its
    # warm model (one model build and warm-up instead of two); see split_loaders()
    fold = "training" in sections and "input_pipeline" in sections
    lsteps = "1" if quick else str(min(reps, 2))
    if "training" in sections:
        # bf16 autocast on NCHW convs is pathologically slow on this CPU build (see
        # BENCHMARKS.md), so the big conv nets time bf16 in channels-last only; the reference
        # net times all four layouts side by side.
        # (a child drops its bf16 variants when the CPU has no native bf16, except the
        # reference's, which then run once: see torch_bench.task_train)
        full_variants = {"mars_cracknet": "fp32,fp32_cl,bf16_cl", "s5mars_ssl": "fp32,bf16_cl",
                         "dune_vlm": "fp32,bf16,bf16_cl",
                         "reference": "fp32,fp32_cl,bf16"}
        for m in TORCH_TRAIN:
            if quick:  # bf16 first calls are slow on CPU: only the reference times both
                variants = "fp32,bf16" if m == "reference" else "fp32"
            else:
                variants = full_variants[m]
            extra = ["--loader-steps", lsteps] if fold else []
            if fold and m == "dune_vlm" and not quick:
                extra.append("--loader-alternative")
            rm = r
            if m == "s5mars_ssl" and not quick:  # 512 x 512, batch 2: the slowest step
                rm = ["--reps", str(min(reps, 2)), "--warmup", str(warmup)]
            jobs.append(Job("training", m, "torch_bench", "train",
                            ["--model", m, "--variants", variants, *extra, *q, *rm]))
        for m in KERAS_TRAIN:
            # TF's bf16 and XLA are timed on the ice model; the 142.6 M-parameter crater
            # model costs about a minute of graph building per variant on this CPU
            # (bf16 is dropped by the child when the CPU has no native bf16)
            # the crater step is timed at batch 4 and, beside it, at batch 1 (fp32_b1)
            variants = "fp32" if quick else ("fp32,fp32_xla,bf16" if m == "ice_patch_cnn"
                                             else "fp32,fp32_b1")
            rk = ["--reps", str(reps if quick or m != "ice_patch_cnn" else min(reps, 2)),
                  "--warmup", "0"]
            # the untimed first train_on_batch (tracing) is the warm-up
            extra = ["--loader-steps", lsteps] if fold else []
            jobs.append(Job("training", m, "keras_bench", "train",
                            ["--model", m, "--variants", variants, *extra, *q, *rk]))
    if "input_pipeline" in sections and not fold:
        # steps fed from disk and from memory: 2 timed after 1 warm-up in the full run
        r = ["--reps", str(min(reps, 2)), "--warmup", str(warmup)]
        for m in TORCH_TRAIN:
            extra = ["--variants", "alternative"] if m == "dune_vlm" and not quick else []
            jobs.append(Job("input_pipeline", m, "torch_bench", "loader",
                            ["--model", m, *extra, *q, *r]))
        for m in KERAS_TRAIN:
            jobs.append(Job("input_pipeline", m, "keras_bench", "pipeline",
                            ["--model", m, *q, *r]))
    r = ["--reps", str(reps), "--warmup", str(warmup)]
    if "rasters" in sections:
        small, large = ("64x64", "64x256") if quick else ("512x512", "512x2048")
        block = "32" if quick else "512"
        jobs += [
            Job("rasters", "dune_overhead", "torch_bench", "dune_tile", [*q, *r]),
            Job("rasters", "dune_rss_small", "torch_bench", "dune_tile",
                ["--size", small, "--variants", block, *q, *one]),
            Job("rasters", "dune_rss_large", "torch_bench", "dune_tile",
                ["--size", large, "--variants", block, *q, *one]),
            Job("rasters", "ice_chunk", "io_bench", "ice_chunk", [*q, *r]),
            Job("rasters", "ice_rss_small", "io_bench", "ice_rss",
                ["--size", "256x256" if quick else "2048x2048", *q, *one]),
            Job("rasters", "ice_rss_large", "io_bench", "ice_rss",
                ["--size", "512x512" if quick else "8192x8192", *q, *one]),
            Job("rasters", "cracknet_tiled", "torch_bench", "crack_tile",
                [*q, "--reps", str(min(reps, 2)), "--warmup", "1", "--variants", "fp32"]),
        ]
    if "crack_analysis" in sections:
        jobs.append(Job("crack_analysis", "analyze_mask", "io_bench", "crack_analysis",
                        [*q, "--reps", "1" if quick else str(reps)]))
    if quick and not every:
        jobs = [j for j in jobs if (j.section, j.key) in QUICK_SUBSET]
    return jobs


def split_loaders(records: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Move the pipeline comparisons measured inside the training children to their section."""
    if "input_pipeline" not in records or "training" not in records:
        return
    for key, rec in records["training"].items():
        if key in records["input_pipeline"]:
            continue
        if "loader" in rec:
            sub = rec.pop("loader")
            sub.update({"measured_in": "the training child (model already warm)",
                        "wall_s": rec.get("wall_s"), "peak_rss_mb": rec.get("peak_rss_mb"),
                        "versions": rec.get("versions", {})})
        elif rec.get("status") != OK:
            sub = {"status": rec.get("status"), "reason": rec.get("reason")}
        else:
            continue
        records["input_pipeline"][key] = sub


def run_job(job: Job, out_dir: Path, threads: int) -> dict[str, Any]:
    """Run one child; its JSON record plus wall time and peak RSS from ``os.wait4``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{job.section}.{job.key}.json"
    log_path = out_dir / f"{job.section}.{job.key}.log"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", f"bench.{job.module}", job.task, "--json", str(json_path),
           "--threads", str(threads), *job.args]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", PYTHONHASHSEED="0",
               TF_ENABLE_ONEDNN_OPTS="1")
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    timed_out = False
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                env=env, start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > job.timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if json_path.is_file() and not timed_out:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    else:
        why = (f"timed out after {job.timeout:.0f} s" if timed_out
               else f"child exited with code {proc.returncode} and wrote no record")
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        record = {"status": ERROR, "reason": f"{why}; log {log_path}: {' | '.join(tail)}"}
    record["wall_s"] = round(wall, 2)
    record["peak_rss_mb"] = round(usage.ru_maxrss / 1024.0, 1)  # this child (and its reaped)
    record["command"] = "python -m bench." + job.module + " " + job.task + " " + \
        " ".join(job.args)
    return record


def time_tests(quick: bool, out_dir: Path) -> dict[str, Any]:
    """Wall time of ``make test`` without the install step (full) or of one test file (quick)."""
    if quick:
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_shared_tiles.py"]
        what = "quick stand-in: pytest tests/test_shared_tiles.py (not make test)"
    else:
        stamp = REPO_ROOT / ".venv" / ".installed"
        cmd = ["make", "--no-print-directory", "-o", str(stamp.relative_to(REPO_ROOT)), "test"]
        what = "make test (setup skipped: -o .venv/.installed)"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    atomic_write_text(out_dir / "tests.log", text)
    folders = {}
    for m in re.finditer(r"^(ok|FAIL)\s+(\S+)\s+\((?:exit \d+, )?(\d+)s\)", text, re.M):
        folders[m.group(2)] = {"status": m.group(1), "wall_s": int(m.group(3))}
    return {"status": OK, "what": what, "command": " ".join(cmd), "returncode": proc.returncode,
            "passed": proc.returncode == 0, "wall_s": round(wall, 1), "folders": folders}


# ----------------------------------------------------------------------------- derivation
def _variant_rows(rec: dict[str, Any], peak_fp32: float | None, peak_bf16: float | None
                  ) -> dict[str, Any]:
    flops = rec.get("flops_per_step")  # at the record's batch; a variant may name its own
    rows = {}
    for name, v in rec.get("variants", {}).items():
        scale = v.get("batch", rec.get("batch")) / rec["batch"] if rec.get("batch") else 1.0
        gflops = ratio(flops * scale, v["median_s"] * 1e9) if flops else None
        rows[name] = {
            "median_s": v["median_s"], "images_per_s": v["images_per_s"],
            "batch": v.get("batch", rec.get("batch")), "achieved_gflops": gflops,
            "frac_fp32_peak": ratio(gflops, peak_fp32),
            "frac_bf16_peak": ratio(gflops, peak_bf16),
        }
    return rows


def derive_training(rec: dict[str, Any]) -> dict[str, Any]:
    """Fractions of this process's own matmul peak and the bf16 / layout speed-ups."""
    peak = rec.get("peak", {})
    p32, p16 = peak.get("fp32_gflops"), peak.get("bf16_gflops")
    rows = _variant_rows(rec, p32, p16)
    med = {k: v["median_s"] for k, v in rows.items()}
    ips = {k: v["images_per_s"] for k, v in rows.items()}  # variants may differ in batch
    kind = rec.get("kind", "")
    target = TARGETS["fp32_frac_dense"] if kind == "dense conv" else TARGETS["fp32_frac_other"]
    fp32_frac = rows.get("fp32", {}).get("frac_fp32_peak")
    best32 = max((k for k in ips if k.startswith("fp32")), key=ips.get, default=None)
    best16 = max((k for k in ips if k.startswith("bf16")), key=ips.get, default=None)
    bf16_speedup = ratio(med.get("fp32"), med.get("bf16"))
    best_bf16_speedup = ratio(ips.get(best16), ips.get(best32)) if best32 and best16 else None
    return {
        "peak_fp32_gflops": p32, "peak_bf16_gflops": p16, "variants": rows,
        "fp32_frac_target": target, "fp32_frac": fp32_frac,
        "fp32_meets_target": None if fp32_frac is None else fp32_frac >= target,
        "best_fp32_variant": best32,
        "best_fp32_frac": rows[best32]["frac_fp32_peak"] if best32 else None,
        "bf16_speedup": bf16_speedup, "best_bf16_variant": best16,
        "best_bf16_speedup": best_bf16_speedup,
        "bf16_meets_target": None if bf16_speedup is None
        else bf16_speedup >= TARGETS["bf16_speedup"],
        "channels_last_speedup_fp32": ratio(med.get("fp32"), med.get("fp32_cl")),
        "channels_last_speedup_bf16": ratio(med.get("bf16"), med.get("bf16_cl")),
        "xla_speedup_fp32": ratio(med.get("fp32"), med.get("fp32_xla")),
    }


def derive_pipeline(rec: dict[str, Any]) -> dict[str, Any]:
    if "memory_steps_per_s" in rec:  # keras record
        return {
            "disk_vs_memory": ratio(rec.get("tfdata_steps_per_s"), rec["memory_steps_per_s"]),
            "tfdata_vs_generator_training": ratio(rec.get("tfdata_steps_per_s"),
                                                  rec.get("generator_steps_per_s")),
            "tfdata_vs_generator_pipeline_only": ratio(rec.get("tfdata_only_batches_per_s"),
                                                       rec.get("generator_only_batches_per_s")),
            "generator_vs_memory": ratio(rec.get("generator_steps_per_s"),
                                         rec["memory_steps_per_s"]),
        }
    out: dict[str, Any] = {}
    for cfg in LOADER_CONFIGS:
        if cfg in rec:
            out[f"{cfg}_disk_vs_memory"] = ratio(rec[cfg]["disk_steps_per_s"],
                                                 rec[cfg]["memory_steps_per_s"])
    out["disk_vs_memory"] = out.get("default_disk_vs_memory")
    return out


def derive_rasters(recs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def ok(key):
        return recs.get(key, {}).get("status") == OK

    out: dict[str, Any] = {}
    if ok("dune_overhead"):
        d = recs["dune_overhead"]
        out["dune_tile_overhead"] = ratio(d["wall_median_s"], d["pure_forward_s"])
        if out["dune_tile_overhead"] is not None:
            out["dune_tile_overhead"] -= 1.0
    if ok("dune_rss_small") and ok("dune_rss_large"):
        s, lg = recs["dune_rss_small"], recs["dune_rss_large"]
        out["dune_rss_growth"] = ratio(lg["peak_rss_mb"], s["peak_rss_mb"])
        out["dune_pixels_ratio"] = ratio(lg["height"] * lg["width"], s["height"] * s["width"])
    if ok("ice_chunk"):
        c = recs["ice_chunk"]
        out["ice_iter_chunks_vs_bare"] = ratio(c["iter_chunks"]["mb_per_s"],
                                               c["bare"]["mb_per_s"])
        out["ice_chunk_image_vs_bare"] = ratio(c["chunk_image"]["mb_per_s"],
                                               c["bare"]["mb_per_s"])
    if ok("ice_rss_small") and ok("ice_rss_large"):
        s, lg = recs["ice_rss_small"], recs["ice_rss_large"]
        out["ice_rss_growth"] = ratio(lg["peak_rss_mb"], s["peak_rss_mb"])
        out["ice_pixels_ratio"] = ratio(lg["height"] * lg["width"], s["height"] * s["width"])
    if ok("cracknet_tiled"):
        c = recs["cracknet_tiled"]
        for v in ("fp32", "bf16", "fp32_cl", "bf16_cl"):
            if v in c:
                out[f"cracknet_{v}_mpx_per_s"] = c[v]["mpx_per_s"]
                out[f"cracknet_{v}_overhead"] = ratio(c[v]["wall_s"], c[v]["pure_forward_s"])
                if out[f"cracknet_{v}_overhead"] is not None:
                    out[f"cracknet_{v}_overhead"] -= 1.0
        bf = "bf16_cl" if "bf16_cl" in c else "bf16"
        if "fp32" in c and bf in c:
            out["cracknet_bf16_speedup"] = ratio(c["fp32"]["wall_s"], c[bf]["wall_s"])
            out["cracknet_bf16_variant"] = bf
    return out


def derive_crack(rec: dict[str, Any]) -> dict[str, Any]:
    out = {}
    if "skeletonize" in rec:
        out["skeletonize_s_per_mpx"] = rec["skeletonize"]["s_per_mpx"]
    if "median_s" in rec.get("analyze_mask", {}):
        out["analyze_mask_s_per_mpx"] = rec["analyze_mask"]["s_per_mpx"]
        out["analyze_vs_skeletonize"] = ratio(rec["analyze_mask"]["median_s"],
                                              rec["skeletonize"]["median_s"])
    return out


def assemble(records: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Add the derived ratios next to each section's raw records."""
    out: dict[str, Any] = {}
    for section, recs in records.items():
        sec: dict[str, Any] = {"entries": recs}
        if section == "training":
            sec["derived"] = {k: derive_training(r) for k, r in recs.items()
                              if r.get("status") == OK}
            peaks32 = [r["peak"]["fp32_gflops"] for r in recs.values()
                       if r.get("status") == OK and "peak" in r]
            peaks16 = [r["peak"]["bf16_gflops"] for r in recs.values()
                       if r.get("status") == OK and "peak" in r]
            sizes = [r["peak"]["n"] for r in recs.values()
                     if r.get("status") == OK and "peak" in r]
            sec["peak_summary"] = {"n": max(sizes) if sizes else None,
                "fp32_gflops_median": statistics.median(peaks32) if peaks32 else None,
                "bf16_gflops_median": statistics.median(peaks16) if peaks16 else None,
                "fp32_gflops_all": peaks32, "bf16_gflops_all": peaks16}
        elif section == "input_pipeline":
            sec["derived"] = {k: derive_pipeline(r) for k, r in recs.items()
                              if r.get("status") == OK}
        elif section == "rasters":
            sec["derived"] = derive_rasters(recs)
        elif section == "crack_analysis":
            sec["derived"] = {k: derive_crack(r) for k, r in recs.items()}
        out[section] = sec
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark every subproject (training-step utilisation, input pipelines, "
                    "large rasters, crack analysis, test time) in child processes; write "
                    "results/bench.json and BENCHMARKS.md. Every headline is a ratio of two "
                    "figures measured in this run.")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, one repetition, two children at a time (tests the bench; "
                        "its numbers say nothing about speed)")
    p.add_argument("--every", action="store_true",
                   help="with --quick: run every child of the full run (tiny sizes), not the "
                        "quick subset (one child per code path)")
    p.add_argument("--reps", type=int, default=None,
                   help="timed repetitions per figure (median reported; default 3, quick 1)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed repetitions first (default 1, quick 0)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per child (default 2; quick 1, so that its two children "
                        "at a time do not oversubscribe a 2-core machine)")
    p.add_argument("--jobs", type=int, default=None,
                   help="children run at once (default 1; quick 2). Timings need 1.")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--only", default=None,
                   help="comma-separated entry keys to run (e.g. reference,mars_cracknet)")
    p.add_argument("--json", type=Path, default=None,
                   help="output JSON (default results/bench.json; quick: runs/bench/quick.json)")
    p.add_argument("--markdown", type=Path, default=None,
                   help="output markdown (default BENCHMARKS.md; quick: runs/bench/quick.md)")
    p.add_argument("--merge", action="store_true",
                   help="update only the given --sections in the existing JSON (each section "
                        "stays one run: its ratios are never mixed across runs) and re-render "
                        "the markdown; with --only, replace only those entries (each entry's "
                        "ratios come from its own child process)")
    p.add_argument("--render", action="store_true",
                   help="measure nothing: re-write the markdown from the existing JSON")
    p.add_argument("--attach-gpu", type=Path, default=None, metavar="GPU_JSON",
                   help="measure nothing: add the record of `python -m bench.gpu_bench all` "
                        "(run on a GPU machine) to the existing JSON and re-write the markdown")
    p.add_argument("--child-timeout", type=float, default=600.0,
                   help="seconds before a child is killed and reported (default 600)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        print(f"error: unknown section(s) {bad}; expected some of {list(SECTIONS)}",
              file=sys.stderr)
        return 2
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    jobs_n = args.jobs if args.jobs is not None else (2 if args.quick else 1)
    if args.threads is None:
        args.threads = 1 if args.quick else 2
    if reps < 1 or warmup < 0 or jobs_n < 1 or args.threads < 1:
        print("error: --reps, --jobs and --threads must be >= 1, --warmup >= 0",
              file=sys.stderr)
        return 2
    tag = "quick" if args.quick else "full"
    json_out = args.json or (RUN_DIR / "quick.json" if args.quick
                             else REPO_ROOT / "results" / "bench.json")
    md_out = args.markdown or (RUN_DIR / "quick.md" if args.quick
                               else REPO_ROOT / "BENCHMARKS.md")
    out_dir = RUN_DIR / tag
    if args.attach_gpu is not None:
        return attach_gpu(args.attach_gpu, json_out, md_out)
    if args.render:
        if not json_out.is_file():
            print(f"error: {json_out}: file not found (run the benchmark first)",
                  file=sys.stderr)
            return 2
        atomic_write_text(md_out, render_markdown(json.loads(json_out.read_text("utf-8")),
                                                  json_out))
        print(f"wrote {md_out} from {json_out}")
        return 0
    jobs = plan(args.quick, reps, warmup, sections, every=args.every)
    if args.only:
        keep = {k.strip() for k in args.only.split(",")}
        jobs = [j for j in jobs if j.key in keep]
    for j in jobs:
        j.timeout = args.child_timeout
    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"bench ({tag}): {len(jobs)} children, {jobs_n} at a time, logs in {out_dir}",
          flush=True)
    records: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in sections}

    def one(job: Job) -> tuple[Job, dict[str, Any]]:
        rec = run_job(job, out_dir, args.threads)
        note = rec.get("reason", "")[:150] if rec.get("status") != OK else ""
        print(f"  {job.section:15s} {job.key:16s} {rec.get('status'):14s} "
              f"{rec['wall_s']:7.1f} s  {rec['peak_rss_mb']:7.0f} MB  {note}", flush=True)
        return job, rec

    with ThreadPoolExecutor(max_workers=jobs_n) as pool:
        for job, rec in pool.map(one, jobs):
            records[job.section][job.key] = rec
    split_loaders(records)
    if "tests" in sections and not args.only:
        rec = time_tests(args.quick, out_dir)
        print(f"  tests           {rec['what']}: {rec['wall_s']} s, exit {rec['returncode']}",
              flush=True)
        records["tests"]["make_test"] = rec
    result = {
        "meta": {
            "quick": args.quick, "date": started, "wall_s": round(time.perf_counter() - t0, 1),
            "machine": _machine(records), "threads": args.threads, "reps": reps,
            "warmup": warmup, "jobs": jobs_n, "gpu": None,
            "gpu_note": "No GPU was lent to this run: every figure is CPU-only; no GPU "
                        "numbers are reported.",  # --attach-gpu replaces this
            "targets": TARGETS,
            "command": "python -m bench.run " + " ".join(argv if argv is not None
                                                         else sys.argv[1:]),
        },
        **assemble(records),
    }
    if args.merge and json_out.is_file():
        old = json.loads(json_out.read_text(encoding="utf-8"))
        if old.get("meta", {}).get("quick") != args.quick:
            print(f"error: {json_out} holds a {'quick' if old['meta']['quick'] else 'full'} run; "
                  "--merge needs the same mode", file=sys.stderr)
            return 2
    if args.merge and args.only and json_out.is_file():
        # entry-level merge: only the re-run entries are replaced (each entry's ratios come
        # from its own child: its peak, its variants and its pipeline comparison)
        recs = {s: dict(old[s]["entries"]) for s in SECTIONS if s in old}
        for s in sections:
            recs.setdefault(s, {}).update(records[s])
        merged = {**old, **assemble(recs)}
        merged["meta"]["wall_s"] = round(old["meta"]["wall_s"] + result["meta"]["wall_s"], 1)
        entry_runs = dict(old["meta"].get("entry_runs", {}))
        entry_runs.update({f"{s}/{k}": started for s in sections for k in records[s]})
        merged["meta"]["entry_runs"] = entry_runs
        result = merged
    elif args.merge and json_out.is_file():
        runs = old["meta"].get("section_runs", {s: old["meta"]["date"] for s in SECTIONS
                                                  if s in old})
        merged = {**old, **{s: result[s] for s in sections}}
        merged["meta"]["machine"] = {**old["meta"]["machine"], **result["meta"]["machine"]}
        merged["meta"]["wall_s"] = round(old["meta"]["wall_s"] + result["meta"]["wall_s"], 1)
        runs.update({s: started for s in sections})
        merged["meta"]["section_runs"] = runs
        # a re-run section replaces every entry of it: drop its older entry-level re-run marks
        merged["meta"]["entry_runs"] = {
            k: v for k, v in old["meta"].get("entry_runs", {}).items()
            if k.split("/", 1)[0] not in sections}
        result = merged
    else:
        result["meta"]["section_runs"] = {s: started for s in sections}
    atomic_write_json(json_out, result)
    atomic_write_text(md_out, render_markdown(result, json_out))
    print(f"wrote {json_out} and {md_out} ({result['meta']['wall_s']} s)")
    not_built = [f"{s}/{k}: {r.get('reason', '')}" for s, recs in records.items()
                 for k, r in recs.items() if r.get("status") == NOT_BUILT]
    errors = [f"{s}/{k}: {r.get('reason', '')}" for s, recs in records.items()
              for k, r in recs.items() if r.get("status") == ERROR]
    for line in not_built:
        print(f"not built yet: {line}")
    for line in errors:
        print(f"error: {line}")
    return 0


def attach_gpu(gpu_json: Path, json_out: Path, md_out: Path) -> int:
    """Add a ``bench.gpu_bench`` record (ratios re-derived from its raw medians) and re-render."""
    from bench.gpu_bench import derive_gpu

    for path in (gpu_json, json_out):
        if not path.is_file():
            print(f"error: {path}: file not found", file=sys.stderr)
            return 2
    try:
        gpu = json.loads(gpu_json.read_text(encoding="utf-8"))
        res = json.loads(json_out.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        print(f"error: {gpu_json} or {json_out}: not valid JSON ({exc})", file=sys.stderr)
        return 2
    if "entries" not in gpu or "device" not in gpu:
        print(f"error: {gpu_json}: not a bench.gpu_bench 'all' record", file=sys.stderr)
        return 2
    gpu["derived"] = {k: derive_gpu(r) for k, r in gpu["entries"].items()
                      if r.get("status") == OK}
    res["gpu"] = gpu
    dev = gpu.get("device") or {}
    res["meta"]["gpu"] = dev.get("gpu")
    if dev.get("gpu"):
        res["meta"]["gpu_note"] = (f"GPU figures measured on {dev['gpu']} by bench.gpu_bench "
                                   f"({gpu.get('date')}); every other figure is CPU-only.")
    atomic_write_json(json_out, res)
    atomic_write_text(md_out, render_markdown(res, json_out))
    print(f"wrote {json_out} and {md_out} with the GPU record of {gpu_json}")
    return 0


def _machine(records: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    info = machine_info()
    versions: dict[str, str] = {}
    for recs in records.values():
        for r in recs.values():
            versions.update(r.get("versions", {}))
    info.update({k: v for k, v in versions.items() if k != "python"})
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((ln.split(":", 1)[1].split() for ln in fh if ln.startswith("flags")), [])
    except OSError:
        flags = []
    info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    for recs in records.values():
        for r in recs.values():
            if "bf16_native" in r.get("peak", {}):
                info["torch_bf16_native"] = r["peak"]["bf16_native"]
                info["torch_cpu_capability"] = r["peak"]["cpu_capability"]
    return info


if __name__ == "__main__":
    sys.exit(main())
