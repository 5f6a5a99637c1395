"""Tests of the benchmark: the quick run end to end, the peak and the ratio derivations."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from bench.common import (
    OK,
    add_utilisation,
    best_peak,
    cpu_flags,
    merge_peaks,
    native_bf16,
    theoretical_peak,
    utilisation,
)
from bench.report import render_markdown
from bench.run import PLAN, SECTIONS, check, plan
from shared.configs import REPO_ROOT as ROOT


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(out / "bench.json"),
         "--markdown", str(out / "BENCHMARKS.md"), "--child-timeout", "300"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), (out / "BENCHMARKS.md").read_text()


def test_every_entry_measures(quick):
    res, md = quick
    assert res["meta"]["quick"] is True
    for section, children in PLAN.items():
        want = {e for entries in children.values() for e in entries}
        assert set(res[section]) == want, section
        bad = {k: r.get("reason") for k, r in res[section].items() if r["status"] != OK}
        assert not bad, bad  # an error or a hung child is a bug, not a figure
    for heading in ("## 1. Training-step utilisation", "## 2. Data loaders against memory",
                    "## 3. Tiled inference against the pure forward",
                    "## 4. Scenes per minute in-process and on a Dask cluster", "Quick mode"):
        assert heading in md


def test_utilisation_is_of_the_largest_peak_and_at_most_one(quick):
    res, md = quick
    bf16_native = native_bf16()[0]
    for name, rec in res["train"].items():
        assert rec["flops_per_step"] > 0, name
        for prec, v in rec["variants"].items():
            if "skipped" in v:
                assert prec == "bf16" and v["skipped"]
                continue
            peak = rec["peaks"][prec]
            cands = [*peak["measured_gflops"].values(),
                     rec["peaks"]["theoretical"][f"{prec}_gflops"] or 0.0]
            assert math.isclose(peak["peak_gflops"], max(cands))
            assert peak["source"] in (*peak["measured_gflops"], "theoretical FMA peak")
            assert peak["source"] in md
            frac = rec["flops_per_step"] / v["median_s"] / 1e9 / peak["peak_gflops"]
            assert math.isclose(v["utilisation"], frac) and 0 < v["utilisation"] <= 1.0
        # bf16 is timed exactly where the CPU has it natively (Keras quick skips it: a
        # second model build)
        if name in PLAN["train"]["torch_bench"]:
            assert ("median_s" in rec["variants"]["bf16"]) == bf16_native, name


def test_loader_and_tiling_ratios_recomputed(quick):
    res, _ = quick
    for name, rec in res["train"].items():
        ld = rec["loader"]
        assert math.isclose(ld["disk_vs_memory"],
                            ld["disk_steps_per_s"] / ld["memory_steps_per_s"]), name
        assert ld["meets_target"] == (ld["disk_vs_memory"] >= 0.9)
    for name, rec in res["tiling"].items():
        assert rec["windows_predicted"] > 0 and rec["forward_calls"] > 0, name
        assert math.isclose(rec["overhead"], rec["tiled_s"] / rec["pure_forward_s"] - 1), name
    dune = res["tiling"]["dune_vlm"]
    # each planned window predicted exactly once (all-no-data windows are skipped)
    assert dune["windows_predicted"] + dune["windows_skipped_nodata"] == dune["windows_planned"]


# ------------------------------------------------------------------------------- units
def test_theoretical_peak_from_flags():
    avx2 = theoretical_peak(1, {"avx2", "fma"}, 2000.0)
    assert math.isclose(avx2["fp32_gflops"], 8 * 2 * 2 * 2.0) and avx2["bf16_gflops"] is None
    avx512 = theoretical_peak(2, {"avx2", "fma", "avx512f", "avx512_bf16"}, 2000.0)
    assert math.isclose(avx512["fp32_gflops"], 16 * 2 * 2 * 2.0 * 2)
    assert math.isclose(avx512["bf16_gflops"], 64 * 2 * 2.0 * 2)
    amx = theoretical_peak(1, {"avx512f", "amx_bf16"}, 1000.0)
    assert math.isclose(amx["bf16_gflops"], 2048.0)
    assert theoretical_peak(1, {"sse4_2"}, 2000.0)["fp32_gflops"] is None
    assert theoretical_peak(1, {"avx512f"}, 0.0)["fp32_gflops"] is None
    assert isinstance(cpu_flags(), set)


def test_bf16_only_where_native():
    assert native_bf16({"avx2"})[0] is False and "skipped" in native_bf16({"avx2"})[1]
    assert native_bf16({"amx_bf16"})[0] and native_bf16({"avx512_bf16"})[0]


def test_merge_peaks_keeps_each_kernels_better_figure():
    theory = {"fp32_gflops": 100.0, "bf16_gflops": None, "basis": "x"}
    before = {"theoretical": theory, "kernels": "k",
              "fp32": {"measured_gflops": {"torch.mm 2048": 90.0, "conv2d 3x3": 95.0}}}
    after = {"theoretical": theory, "kernels": "k",
             "fp32": {"measured_gflops": {"torch.mm 2048": 120.0, "conv2d 3x3": 80.0}}}
    merged = merge_peaks(before, after)["fp32"]
    assert merged["measured_gflops"] == {"torch.mm 2048": 120.0, "conv2d 3x3": 95.0}
    assert (merged["peak_gflops"], merged["source"]) == (120.0, "torch.mm 2048")
    variants = {"fp32": {"median_s": 2.0}, "bf16": {"skipped": "no native bf16"}}
    add_utilisation("m", variants, 200e9, {"fp32": merged})
    assert variants["fp32"]["utilisation"] == pytest.approx(100 / 120)
    assert "utilisation" not in variants["bf16"]


def test_best_peak_and_refused_fraction():
    assert best_peak({"torch.mm": 80.0, "conv2d 3x3": 120.0}, 100.0) == (120.0, "conv2d 3x3")
    assert best_peak({"torch.mm": 80.0}, 100.0) == (100.0, "theoretical FMA peak")
    with pytest.raises(ValueError):
        best_peak({"torch.mm": None}, None)
    assert utilisation(50.0, 100.0) == 0.5
    with pytest.raises(AssertionError, match="peak estimate is wrong"):
        utilisation(101.0, 100.0, "x")


def _record(util: float) -> dict:
    v = {"median_s": 1.0, "peak_gflops": 10.0, "utilisation": util, "achieved_gflops": 5.0,
         "peak_source": "torch.mm"}
    peak = {"measured_gflops": {"torch.mm": 10.0}, "peak_gflops": 10.0, "source": "torch.mm"}
    return {"meta": {"quick": True, "date": "d", "wall_s": 1.0, "command": "c", "threads": 1,
                     "reps": 1, "targets": {"disk_vs_memory": 0.9, "tile_overhead": 0.1},
                     "machine": {"cpu": "x", "cores": 2, "cpu_flags": [], "bf16": "no"}},
            "train": {"m": {"status": OK, "profile": "paper", "input": "3x8x8", "batch": 1,
                            "paper_batch": 4, "notes": "n", "flops_per_step": 5e9,
                            "peaks": {"fp32": peak, "theoretical": {
                                "fp32_gflops": None, "bf16_gflops": None, "basis": "b"}},
                            "variants": {"fp32": v, "bf16": {"skipped": "no native bf16"}},
                            "loader": {"memory_steps_per_s": 1.0, "disk_steps_per_s": 0.8,
                                       "disk_vs_memory": 0.8}}},
            "tiling": {"t": {"status": OK, "predictor": "p", "image": "i", "tiled_s": 1.05,
                             "pure_forward_s": 1.0, "overhead": 0.05, "forward_calls": 2,
                             "windows_predicted": 4}}}


def test_check_marks_targets_and_catches_a_wrong_fraction(tmp_path):
    res = _record(0.5)
    assert check(res) == []
    assert res["train"]["m"]["loader"]["meets_target"] is False
    assert res["tiling"]["t"]["meets_target"] is True
    md = render_markdown(res, tmp_path / "b.json")
    assert "50 %" in md and "torch.mm" in md and "no native bf16" in md
    assert check(_record(0.7)) and check(_record(1.5))


def test_training_table_reports_the_bf16_speed_up(tmp_path):
    """Where bf16 ran (native), the table gives fp32 median step / bf16 median step."""
    res = _record(0.5)
    res["train"]["m"]["peaks"]["bf16"] = res["train"]["m"]["peaks"]["fp32"]
    res["train"]["m"]["variants"]["bf16"] = {**res["train"]["m"]["variants"]["fp32"],
                                             "median_s": 0.4}
    md = render_markdown(res, tmp_path / "b.json")
    assert "bf16 speed-up" in md and "| 2.50x |" in md


def test_plan():
    full = plan(False, list(SECTIONS))
    assert all(len(entries) == 1 for _, _, entries in full)  # one child per entry
    assert len(full) == sum(len(e) for c in PLAN.values() for e in c.values())
    quick_jobs = plan(True, list(SECTIONS))
    assert len(quick_jobs) == 5  # one child per framework and section
    assert {m for _, m, _ in quick_jobs} == {"torch_bench", "keras_bench", "cluster_bench"}
    assert plan(False, ["tiling"], {"dune_vlm"}) == [("tiling", "torch_bench", ["dune_vlm"])]
