"""Tests of the benchmark: the quick run end to end, and the ratio derivation.

The quick run may find a subproject not built yet (its module is not importable): that entry
then says so and the test prints it. Entries owned by the bench (the reference conv net, its
PNG loader, the skeletonisation reference) must always carry numbers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import ERROR, NOT_BUILT, OK, NotBuilt, need, ratio
from bench.run import SECTIONS, Job, derive_pipeline, derive_rasters, derive_training, plan, run_job

ROOT = Path(__file__).resolve().parents[2]


def _close(a, b, rel=1e-9):
    return a is not None and b is not None and math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def _numbers(obj) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return []


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(out / "bench.json"),
         "--markdown", str(out / "BENCHMARKS.md"), "--child-timeout", "240"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (json.loads((out / "bench.json").read_text()), (out / "BENCHMARKS.md").read_text(),
            proc.stdout)


def test_quick_run_has_every_section_with_numbers(quick):
    res, md, _ = quick
    meta = res["meta"]
    assert meta["quick"] is True
    assert meta["machine"]["cpu"] and meta["machine"]["cores"] >= 1
    assert meta["gpu"] is None and "No GPU" in meta["gpu_note"]
    for section in SECTIONS:
        assert section in res, f"section {section} missing"
        entries = res[section]["entries"]
        assert entries, f"section {section} has no entries"
        for key, rec in entries.items():
            assert rec["status"] in (OK, NOT_BUILT, ERROR), (section, key, rec)
            if rec["status"] != OK:
                print(f"{section}/{key}: {rec['status']}: {rec.get('reason')}")
                assert rec.get("reason"), f"{section}/{key} gives no reason"
        ok = [r for r in entries.values() if r["status"] == OK]
        if not ok:  # acceptable only when every entry's subproject is not built yet
            assert all(r["status"] == NOT_BUILT for r in entries.values()), section
            continue
        measured = [x for r in ok for x in _numbers({k: v for k, v in r.items()
                                                      if k not in ("versions",)})]
        assert any(x > 0 for x in measured), f"section {section} has no positive figure"
    for heading in ("## 1. Compute utilisation", "## 2. Input pipelines", "## 3. Large rasters",
                    "## 4. Crack analysis", "## 5. Test time", "No GPU",
                    "## Suggested changes per subproject"):
        assert heading in md


def test_no_quick_child_errs_or_hangs(quick):
    """A built subproject's child must measure: an error or a time-out (a hung data loader,
    say) is a bug, not a figure. Only a subproject not built yet may be skipped."""
    errors = [f"{s}/{k}: {r.get('reason')}" for s in SECTIONS
              for k, r in quick[0].get(s, {}).get("entries", {}).items()
              if r.get("status") == ERROR]
    assert not errors, errors


def test_bench_owned_entries_always_measure(quick):
    res = quick[0]
    tr = res["training"]["entries"]["reference"]
    assert tr["status"] == OK, tr
    assert tr["flops_per_step"] > 0 and tr["peak"]["fp32_gflops"] > 0
    assert tr["peak"]["bf16_gflops"] > 0
    assert set(tr["variants"]) >= {"fp32", "bf16"}
    assert all(v["median_s"] > 0 for v in tr["variants"].values())
    ld = res["input_pipeline"]["entries"]["reference"]
    assert ld["status"] == OK and ld["default"]["disk_steps_per_s"] > 0
    crack = res["crack_analysis"]["entries"]["analyze_mask"]
    assert crack["skeletonize"]["median_s"] > 0
    assert res["tests"]["entries"]["make_test"]["wall_s"] > 0


def test_ratios_are_recomputed_from_the_same_run(quick):
    """Every derived ratio equals the ratio of the raw medians stored beside it."""
    res = quick[0]
    checked = 0
    for key, d in res["training"]["derived"].items():
        rec = res["training"]["entries"][key]
        p32 = rec["peak"]["fp32_gflops"]
        for name, v in rec["variants"].items():
            frac = rec["flops_per_step"] / v["median_s"] / 1e9 / p32
            assert _close(d["variants"][name]["frac_fp32_peak"], frac), (key, name)
            checked += 1
        if "bf16" in rec["variants"]:
            assert _close(d["bf16_speedup"],
                          rec["variants"]["fp32"]["median_s"] / rec["variants"]["bf16"]["median_s"])
    for key, d in res["input_pipeline"]["derived"].items():
        rec = res["input_pipeline"]["entries"][key]
        if "memory_steps_per_s" in rec:
            want = rec["tfdata_steps_per_s"] / rec["memory_steps_per_s"]
        else:
            want = rec["default"]["disk_steps_per_s"] / rec["default"]["memory_steps_per_s"]
        assert _close(d["disk_vs_memory"], want), key
        checked += 1
    rd, re_ = res["rasters"]["derived"], res["rasters"]["entries"]
    if "dune_tile_overhead" in rd:
        d = re_["dune_overhead"]
        assert _close(rd["dune_tile_overhead"], d["wall_median_s"] / d["pure_forward_s"] - 1)
        checked += 1
    if "ice_iter_chunks_vs_bare" in rd:
        c = re_["ice_chunk"]
        assert _close(rd["ice_iter_chunks_vs_bare"],
                      c["iter_chunks"]["mb_per_s"] / c["bare"]["mb_per_s"])
        checked += 1
    assert checked >= 3


# ------------------------------------------------------------------- units (no frameworks)
def test_ratio_and_need():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(1.0, 0) is None
    with pytest.raises(NotBuilt):
        need("bench_no_such_module_xyz")
    with pytest.raises(NotBuilt):
        need("bench.common", "no_such_function")


def test_derivations_on_a_synthetic_record():
    rec = {"status": OK, "kind": "dense conv", "flops_per_step": 2e9,
           "peak": {"fp32_gflops": 10.0, "bf16_gflops": 20.0},
           "variants": {"fp32": {"median_s": 0.4, "images_per_s": 5.0},
                        "bf16": {"median_s": 0.2, "images_per_s": 10.0}}}
    d = derive_training(rec)
    assert _close(d["variants"]["fp32"]["achieved_gflops"], 5.0)
    assert _close(d["fp32_frac"], 0.5) and d["fp32_meets_target"] is True
    assert _close(d["bf16_speedup"], 2.0) and d["bf16_meets_target"] is True
    p = derive_pipeline({"default": {"disk_steps_per_s": 0.8, "memory_steps_per_s": 1.0}})
    assert _close(p["disk_vs_memory"], 0.8)
    r = derive_rasters({"dune_overhead": {"status": OK, "wall_median_s": 11.5,
                                          "pure_forward_s": 10.0}})
    assert _close(r["dune_tile_overhead"], 0.15)


def test_a_variant_at_another_batch_is_counted_at_its_own_batch():
    # FLOPs are counted at the record's batch 4; fp32_b1 ran at batch 1 in a quarter the time
    rec = {"status": OK, "kind": "dense conv", "flops_per_step": 4e9, "batch": 4,
           "peak": {"fp32_gflops": 10.0, "bf16_gflops": 1.0},
           "variants": {"fp32": {"median_s": 0.8, "images_per_s": 5.0, "batch": 4},
                        "fp32_b1": {"median_s": 0.4, "images_per_s": 2.5, "batch": 1}}}
    d = derive_training(rec)
    assert _close(d["variants"]["fp32"]["frac_fp32_peak"], 0.5)
    assert _close(d["variants"]["fp32_b1"]["achieved_gflops"], 2.5)  # 1e9 FLOP / 0.4 s
    assert d["best_fp32_variant"] == "fp32"  # more images/s, though a longer step


def test_plan_covers_every_section():
    jobs = plan(quick=True, reps=1, warmup=0, sections=list(SECTIONS), every=True)
    assert {j.section for j in jobs} >= set(SECTIONS) - {"tests", "input_pipeline"}
    keys = {(j.section, j.key) for j in jobs}
    alone = {(j.section, j.key) for j in plan(quick=True, reps=1, warmup=0,
                                               sections=["input_pipeline"], every=True)}
    for m in ("mars_cracknet", "dune_vlm", "s5mars_ssl", "crater_resunet", "ice_patch_cnn"):
        assert ("training", m) in keys and ("input_pipeline", m) in alone
    full = plan(quick=False, reps=3, warmup=1, sections=list(SECTIONS))
    assert {(j.section, j.key) for j in full} == keys
    # both sections: the training children also measure the pipelines
    folded = plan(quick=False, reps=3, warmup=1, sections=["training", "input_pipeline"])
    assert {j.section for j in folded} == {"training"}
    assert all("--loader-steps" in j.args for j in folded)
    subset = plan(quick=True, reps=1, warmup=0, sections=list(SECTIONS))
    assert {j.section for j in subset} == set(SECTIONS) - {"tests", "input_pipeline"}


def test_a_child_without_record_is_reported_not_raised(tmp_path):
    # bench.common has no command line: the child exits without writing its record
    rec = run_job(Job("training", "broken", "common", "train"), tmp_path, threads=1)
    assert rec["status"] == ERROR and "no record" in rec["reason"]
    assert rec["peak_rss_mb"] > 0 and rec["wall_s"] >= 0


def test_attach_gpu_rederives_ratios_and_renders(tmp_path):
    """A gpu_bench record (synthetic here: no GPU is lent to this project's CI) is attached."""
    from bench.gpu_bench import derive_gpu
    from bench.run import main

    base = {"meta": {"quick": True, "date": "d", "wall_s": 1.0, "machine": {"cpu": "x"},
                     "threads": 1, "reps": 1, "warmup": 0, "jobs": 1, "gpu": None,
                     "gpu_note": "No GPU was lent to this run."}}
    gpu = {"date": "g", "wall_s": 60.0, "command": "python -m bench.gpu_bench all",
           "device": {"gpu": "Some GPU", "capability": "9.0", "memory_gib": 80},
           "entries": {
               "crater_resunet": {"status": OK, "framework": "keras 3 (torch backend)",
                                  "batch": 16, "input": "256x256x3", "flops_per_step": 4e12,
                                  "peak": {"fp32_tflops": 50.0, "tf32_tflops": 400.0,
                                           "bf16_tflops": 800.0},
                                  "seed_reference": {"s_per_step": 0.54},
                                  "variants": {"fp32": {"median_s": 0.1, "images_per_s": 160},
                                               "bf16": {"median_s": 0.05,
                                                        "images_per_s": 320}}},
               "dune_vlm": {"status": ERROR, "reason": "boom"}}}
    (tmp_path / "b.json").write_text(json.dumps(base))
    (tmp_path / "g.json").write_text(json.dumps(gpu))
    assert main(["--attach-gpu", str(tmp_path / "g.json"), "--json", str(tmp_path / "b.json"),
                 "--markdown", str(tmp_path / "B.md")]) == 0
    res = json.loads((tmp_path / "b.json").read_text())
    d = res["gpu"]["derived"]["crater_resunet"]
    assert _close(d["variants"]["fp32"]["achieved_tflops"], 40.0)
    assert d["variants"]["fp32"]["vs_peak_of"] == "tf32"  # Keras/torch: cuDNN TF32 on
    assert _close(d["variants"]["fp32"]["frac_peak"], 0.1)
    assert _close(d["variants"]["bf16"]["frac_peak"], 80.0 / 800.0)
    assert _close(d["bf16_speedup_vs_fp32"], 2.0)
    assert _close(d["speedup_vs_seed_p100_fp32"], 5.4)
    assert d == derive_gpu(gpu["entries"]["crater_resunet"])
    assert res["meta"]["gpu"] == "Some GPU"
    md = (tmp_path / "B.md").read_text()
    assert "## 6. GPU" in md and "Some GPU" in md and "boom" in md
    assert main(["--attach-gpu", str(tmp_path / "missing.json"), "--json",
                 str(tmp_path / "b.json")]) == 2
