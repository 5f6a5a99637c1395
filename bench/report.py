"""BENCHMARKS.md from the record that ``bench/run.py`` assembles (no measurement here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import LOADER_CONFIGS, OK, REPO_ROOT

SUBPROJECT_CHANGES = Path(__file__).with_name("subproject_changes.json")

LABELS = {
    "mars_cracknet": "Mars-CrackNet ResUNet (torch)",
    "dune_vlm": "dune SegFormer + text fusion (torch)",
    "s5mars_ssl": "S5Mars DeepLabv3+ R50 (torch)",
    "reference": "bench reference: plain conv net (torch)",
    "crater_resunet": "crater ResNet-UNet (Keras/TF)",
    "ice_patch_cnn": "ice Xception chunk CNN (Keras/TF)",
}


def _f(v: Any, fmt: str = ".3g", pct: bool = False) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, (int, float)):
        return f"{100 * v:.0f} %" if pct else format(v, fmt)
    return str(v)


def _status(rec: dict[str, Any]) -> str:
    return f"{rec.get('status')}: {rec.get('reason', '')}".replace("|", "/")


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def render_markdown(res: dict[str, Any], json_path: Path) -> str:
    meta = res["meta"]
    m = meta["machine"]
    quick = meta["quick"]
    runs = meta.get("section_runs", {})
    merged = len(set(runs.values())) > 1 or bool(meta.get("entry_runs"))
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`" + (" --quick" if quick else "") +
        f"); raw figures in [`{_rel(json_path)}`]({_rel(json_path)}). " + (
            f"First run {meta['date']}; the runs that make up this record took "
            f"{meta['wall_s'] / 60:.1f} min in all." if merged else
            f"Run {meta['date']}, {meta['wall_s'] / 60:.1f} min in all."),
        "",
    ]
    if len(set(runs.values())) > 1:
        lines += ["Sections were run separately (`--merge`; each section's ratios come from one "
                  "run): " + ", ".join(f"{k} {v}" for k, v in runs.items()) + ".", ""]
    er = meta.get("entry_runs", {})
    if er:
        lines += ["Entries re-run separately (`--merge --only`; each entry's ratios come from its "
                  "own child process): " + ", ".join(f"{k} {v}" for k, v in er.items()) + ".",
                  ""]
    if quick:
        lines += ["> **Quick mode**: tiny sizes and one repetition, run to test the bench "
                  "itself. These numbers say nothing about speed.", ""]
    lines += [
        f"**Machine**: {m.get('cpu')}, {m.get('cores')} cores, Python {m.get('python')}, "
        f"torch {m.get('torch', '?')}, TensorFlow {m.get('tensorflow', '?')}, Keras "
        f"{m.get('keras', '?')}. Every child process ran with {meta['threads']} thread(s), "
        f"{meta['jobs']} child(ren) at a time, median of {meta['reps']} timed repetitions after "
        f"{meta['warmup']} warm-up (unless a table says otherwise). CPU vector extensions: "
        f"{', '.join(m.get('cpu_flags', [])) or '?'}; torch CPU capability "
        f"{m.get('torch_cpu_capability', '?')}, native bf16 (oneDNN): "
        f"{_f(m.get('torch_bf16_native'))}.",
        "",
        _gpu_line(res),
        "",
        "**How to read it.** The machine is shared and noisy, so every headline is a ratio of two "
        "figures measured side by side in this run: a training step's FLOP/s against a large "
        "matrix multiply timed *in the same process* just before it; a data loader against the "
        "same batches in memory; tiled inference against the pure forward over the same windows; "
        "chunking against a bare rasterio read of the same windows. Peak RSS is each child "
        "process's own maximum resident set (`os.wait4`).",
        "",
    ]
    lines += _training(res.get("training"))
    lines += _pipelines(res.get("input_pipeline"))
    lines += _rasters(res.get("rasters"))
    lines += _crack(res.get("crack_analysis"))
    lines += _tests(res.get("tests"))
    lines += _gpu(res.get("gpu"))
    lines += _shortfalls(res)
    lines += _suggestions(res)
    lines += _changes(res)
    return "\n".join(lines) + "\n"


def _training(sec: dict[str, Any] | None) -> list[str]:
    if not sec:
        return []
    ent, der = sec["entries"], sec.get("derived", {})
    ps = sec.get("peak_summary", {})
    out = [
        "## 1. Compute utilisation of training",
        "",
        "One full training step (forward, loss, backward, optimiser) at the paper's input size "
        "(the batch that fits this CPU; the paper's batch is named). FLOPs: "
        "`torch.utils.flop_counter.FlopCounterMode` over forward + backward for PyTorch; for Keras "
        "an analytic count of the conv/dense layers from their shapes, times 3 for forward + "
        "backward. Peak: `torch.mm` (or `tf.linalg.matmul` in the Keras children) of "
        f"{ps.get('n', '?')} x {ps.get('n', '?')} matrices in fp32 and bf16 in the same process "
        "just before the model; median over the children: "
        f"fp32 {_f(ps.get('fp32_gflops_median'), '.0f')} GFLOP/s, bf16 "
        f"{_f(ps.get('bf16_gflops_median'), '.0f')} GFLOP/s.",
        "",
        "| model | params | input (paper) | batch | GFLOP / step | fp32 s / step | img/s | "
        "GFLOP/s | % of fp32 peak | target | bf16 s / step | bf16 speed-up (target 1.5x) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, rec in ent.items():
        if rec.get("status") != OK:
            out.append(f"| {LABELS.get(key, key)} | {_status(rec)} | | | | | | | | | | |")
            continue
        d = der[key]
        v32 = d["variants"].get("fp32", {})
        v16 = d["variants"].get("bf16", {})
        out.append(
            f"| {LABELS.get(key, key)} | {rec.get('params', 0) / 1e6:.2f} M | {rec.get('input')} "
            f"({rec.get('paper_input')}) | {rec.get('batch')} | "
            f"{_f(rec.get('flops_per_step', 0) / 1e9, '.1f')} | {_f(v32.get('median_s'))} | "
            f"{_f(v32.get('images_per_s'))} | {_f(v32.get('achieved_gflops'), '.1f')} | "
            f"{_f(d.get('fp32_frac'), pct=True)} (peak {_f(d['peak_fp32_gflops'], '.0f')}) | "
            f"{_f(d['fp32_frac_target'], pct=True)}: {_f(d.get('fp32_meets_target'))} | "
            f"{_f(v16.get('median_s'))} | {_f(d.get('bf16_speedup'), '.2f')}x: "
            f"{_f(d.get('bf16_meets_target'))} |")
    out += ["", "Every variant side by side (what the bench can change without touching the "
                "subprojects: channels-last memory format, bf16 autocast / `mixed_bfloat16`, XLA "
                "`jit_compile`, and for the crater model the batch, `fp32_b1` being batch 1):",
            "",
            "| model | variant | batch | s / step | img/s | GFLOP/s | % fp32 peak | "
            "% bf16 peak | speed-up vs fp32 (img/s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, d in der.items():
        base = d["variants"].get("fp32", {}).get("images_per_s")
        for name, v in d["variants"].items():
            sp = v["images_per_s"] / base if base else None
            out.append(f"| {LABELS.get(key, key)} | {name} | {v.get('batch', '')} | "
                       f"{_f(v['median_s'])} | "
                       f"{_f(v['images_per_s'])} | {_f(v['achieved_gflops'], '.1f')} | "
                       f"{_f(v['frac_fp32_peak'], pct=True)} | {_f(v['frac_bf16_peak'], pct=True)}"
                       f" | {_f(sp, '.2f')}x |")
    notes = [f"- {LABELS.get(k, k)}: {r.get('notes')}" for k, r in ent.items()
             if r.get("status") == OK and r.get("notes")]
    for k, r in ent.items():
        for v, why in (r.get("skipped_variants") or {}).items():
            notes.append(f"- {LABELS.get(k, k)}, {v}: {why}.")
        for v, t in (r.get("variants") or {}).items():
            if t.get("note"):
                notes.append(f"- {LABELS.get(k, k)}, {v}: {t['note']}.")
        pk = r.get("peak", {})
        if pk.get("bf16_n") and pk.get("bf16_n") != pk.get("n"):
            notes.append(f"- {LABELS.get(k, k)}: its bf16 peak was timed at n = {pk['bf16_n']} "
                         "(emulated bf16 is too slow for the full size).")
    over = [LABELS.get(k, k) for k, d in der.items()
            if any((v.get("frac_fp32_peak") or 0) > 1 for v in d["variants"].values())]
    if over:
        notes.append(f"- Above 100 % of the fp32 peak ({', '.join(over)}): the reference is "
                     "`torch.mm` (MKL's sgemm here), and this model's kernels (oneDNN "
                     "convolutions and matmuls) ran faster than it. On this CPU the reference "
                     "therefore understates the hardware's peak, and every fraction in this "
                     "table is relative to that reference, not to the silicon.")
    out += ["", *notes, ""]
    return out


def _pipelines(sec: dict[str, Any] | None) -> list[str]:
    if not sec:
        return []
    ent, der = sec["entries"], sec.get("derived", {})
    out = ["## 2. Input pipelines", "",
           "Training steps/s (fp32) fed by the subproject's own data pipeline reading files "
           "from disk, against the same batches already in memory (target at least 0.9). "
           "\"Loader alone\" is how many batches/s the pipeline delivers with no training.", "",
           "| model | data | workers | steps/s in memory | steps/s from disk | disk / memory | "
           "loader alone (batches/s) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    keras_rows = []
    for key, rec in ent.items():
        if rec.get("status") != OK:
            out.append(f"| {LABELS.get(key, key)} | {_status(rec)} | | | | | |")
            continue
        if "memory_steps_per_s" in rec:
            keras_rows.append(key)
            d = der[key]
            out.append(f"| {LABELS.get(key, key)} | {rec.get('files')}, tf.data | AUTOTUNE | "
                       f"{_f(rec['memory_steps_per_s'])} | {_f(rec['tfdata_steps_per_s'])} | "
                       f"{_f(d['disk_vs_memory'], '.2f')} | "
                       f"{_f(rec['tfdata_only_batches_per_s'])} |")
            continue
        for cfg, change in LOADER_CONFIGS.items():
            if cfg not in rec:
                continue
            c = rec[cfg]
            label = LABELS.get(key, key) + (f" (bench: {change})" if change else "")
            out.append(f"| {label} | {c['dataset']} | {c['workers']} | "
                       f"{_f(c['memory_steps_per_s'])} | {_f(c['disk_steps_per_s'])} | "
                       f"{_f(der[key].get(f'{cfg}_disk_vs_memory'), '.2f')} | "
                       f"{_f(c['loader_only_batches_per_s'])} |")
    if keras_rows:
        out += ["", "Keras: the `tf.data` pipeline against a plain Python generator that "
                    "re-reads and resizes every file in the training thread (what the original "
                    "crater code does):", "",
                "| model | tf.data batches/s | generator batches/s | speed-up (pipeline alone) | "
                "steps/s tf.data | steps/s generator | speed-up (training) |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for key in keras_rows:
            rec, d = ent[key], der[key]
            out.append(f"| {LABELS.get(key, key)} | {_f(rec['tfdata_only_batches_per_s'])} | "
                       f"{_f(rec['generator_only_batches_per_s'])} | "
                       f"{_f(d['tfdata_vs_generator_pipeline_only'], '.2f')}x | "
                       f"{_f(rec['tfdata_steps_per_s'])} | {_f(rec['generator_steps_per_s'])} | "
                       f"{_f(d['tfdata_vs_generator_training'], '.2f')}x |")
    steps = {r.get("steps") for r in ent.values() if r.get("status") == OK}
    out += ["", f"Timed steps per figure: twice {', '.join(map(str, sorted(steps)))}, in blocks "
                "ordered memory, disk, disk, memory (Keras: memory, tf.data, generator, "
                "generator, tf.data, memory), each pipeline block a fresh iteration after its "
                "warm-up step, so that a drift of the machine's speed weighs on both sides; "
                "rates are total steps over total time.", ""]
    return out


def _rasters(sec: dict[str, Any] | None) -> list[str]:
    if not sec:
        return []
    ent, d = sec["entries"], sec.get("derived", {})
    out = ["## 3. Large rasters", ""]
    do = ent.get("dune_overhead", {})
    if do.get("status") == OK:
        out += [f"**`dune_vlm/inference_tile.py`** (`predict_raster`, tile {do['tile']}, stride "
                f"{do['stride']}, block {do['block']}, batch {do['batch']}) on a "
                f"{do['raster']}: {do['windows_predicted']} windows, wall "
                f"{_f(do['wall_median_s'])} s (median of {len(do['wall_times_s'])}) against "
                f"{_f(do['pure_forward_s'])} s of pure model forward for the same number of "
                f"windows (batch forward {_f(do['forward_batch_median_s'])} s): overhead of "
                f"I/O, blending and writing **{_f(d.get('dune_tile_overhead'), pct=True)}** "
                "(target at most 15 %).", ""]
    else:
        out += [f"`dune_vlm/inference_tile.py`: {_status(do)}", ""]
    rows = [("dune_rss_small", "dune inference_tile"), ("dune_rss_large", "dune inference_tile"),
            ("ice_rss_small", "ice chunk.py iter_chunks"),
            ("ice_rss_large", "ice chunk.py iter_chunks")]
    out += ["Peak RSS at two raster sizes (each a fresh process; memory must not grow with the "
            "raster):", "", "| pipeline | raster (h x w) | block / chunk | wall s | peak RSS MB |",
            "| --- | --- | --- | --- | --- |"]
    for key, label in rows:
        if key not in ent:  # not in this run's plan (--quick measures a subset)
            continue
        r = ent[key]
        if r.get("status") != OK:
            out.append(f"| {label} | {_status(r)} | | | |")
            continue
        blk = r.get("block", r.get("chunk"))
        wall = r.get("wall_median_s", r.get("wall_s"))
        out.append(f"| {label} | {r['height']} x {r['width']} | {blk} | {_f(wall)} | "
                   f"{_f(r['peak_rss_mb'], '.0f')} |")
    out += ["", f"RSS growth, dune: {_f(d.get('dune_rss_growth'), '.2f')}x for "
                f"{_f(d.get('dune_pixels_ratio'), '.0f')}x the pixels; ice: "
                f"{_f(d.get('ice_rss_growth'), '.2f')}x for {_f(d.get('ice_pixels_ratio'), '.0f')}"
                "x the pixels.", ""]
    ic = ent.get("ice_chunk", {})
    if ic.get("status") == OK:
        out += [f"**`ice_patch_cnn/chunk.py`** on a {ic['image']} ({ic['height']} x "
                f"{ic['width']}, {ic['windows']} chunks of {ic['chunk']}, {ic['kept_chunks']} "
                f"kept), MB/s of raw input pixels, median of {len(ic['bare']['times_s'])}:", "",
                "| reader | s | MB/s | vs bare read |", "| --- | --- | --- | --- |",
                f"| bare rasterio read of the same windows | {_f(ic['bare']['median_s'])} | "
                f"{_f(ic['bare']['mb_per_s'])} | 1 |",
                f"| `iter_chunks` (read, gray, no-data test, 8-bit) | "
                f"{_f(ic['iter_chunks']['median_s'])} | {_f(ic['iter_chunks']['mb_per_s'])} | "
                f"**{_f(d.get('ice_iter_chunks_vs_bare'), '.2f')}** (target 0.8) |",
                f"| `chunk_image` (the same plus PNG files) | {_f(ic['chunk_image']['median_s'])}"
                f" | {_f(ic['chunk_image']['mb_per_s'])} | "
                f"{_f(d.get('ice_chunk_image_vs_bare'), '.2f')} |",
                "", f"Peak RSS of that process: {_f(ic['peak_rss_mb'], '.0f')} MB.", ""]
    else:
        out += [f"`ice_patch_cnn/chunk.py`: {_status(ic)}", ""]
    ct = ent.get("cracknet_tiled", {})
    if ct.get("status") == OK:
        out += [f"**Mars-CrackNet tiled prediction** (`{ct.get('pipeline', '?')}`, tile "
                f"{ct['tile']}, overlap {ct['overlap']}, read window by window, blended, written "
                "strip by strip) of a "
                f"{ct['image']}; peak RSS {_f(ct['peak_rss_mb'], '.0f')} MB:", "",
                "| precision | wall s | tiles | Mpx/s | pure forward s | overhead |",
                "| --- | --- | --- | --- | --- | --- |"]
        for v in ("fp32", "bf16", "fp32_cl", "bf16_cl"):
            if v in ct:
                c = ct[v]
                out.append(f"| {v} | {_f(c['wall_s'])} | {c['tiles']} | {_f(c['mpx_per_s'])} | "
                           f"{_f(c['pure_forward_s'])} | "
                           f"{_f(d.get(f'cracknet_{v}_overhead'), pct=True)} |")
        out += ["", f"bf16 autocast ({d.get('cracknet_bf16_variant', 'bf16')}; `_cl` = the model "
                    "in channels-last memory format) speed-up of the whole tiled prediction: "
                    f"{_f(d.get('cracknet_bf16_speedup'), '.2f')}x.", ""]
    else:
        out += [f"Mars-CrackNet tiled prediction: {_status(ct)}", ""]
    return out


def _crack(sec: dict[str, Any] | None) -> list[str]:
    if not sec:
        return []
    rec = sec["entries"].get("analyze_mask", {})
    d = sec.get("derived", {}).get("analyze_mask", {})
    out = ["## 4. Crack analysis", ""]
    if "skeletonize" in rec:
        out.append(f"Mask: {rec['mask']}, crack fraction {_f(rec['crack_fraction'], '.3f')}. "
                   f"Reference: `skimage.morphology.skeletonize` of the same mask "
                   f"{_f(rec['skeletonize']['median_s'])} s "
                   f"({_f(d.get('skeletonize_s_per_mpx'))} s/Mpx).")
    if rec.get("status") == OK and "skipped" in rec.get("analyze_mask", {}):
        out.append(f"`{rec['module']}.analyze_mask`: {rec['analyze_mask']['skipped']}.")
    elif rec.get("status") == OK:
        out.append(f"First call on a 256 x 256 mask (JIT compilation included, untimed warm-up):"
                   f" {_f(rec.get('first_call_256px_s'))} s.")
        out.append(f"`{rec['module']}.analyze_mask`: {_f(rec['analyze_mask']['median_s'])} s, "
                   f"**{_f(d.get('analyze_mask_s_per_mpx'))} s per megapixel** "
                   f"({_f(d.get('analyze_vs_skeletonize'), '.1f')}x the skeletonisation alone; "
                   f"median of {rec['analyze_mask']['reps']}).")
        prof = rec.get("profile", {})
        if prof.get("top"):
            out.append("")
            out.append(f"Where the time goes (cProfile of one more call, {prof['total_s']} s "
                       "under the profiler; cumulative time, calls):")
            out.append("")
            out += [f"- `{r['function']}`: {r['cumulative_s']} s ({_f(r['share'], pct=True)}), "
                    f"{r['calls']} call(s)" for r in prof["top"]]
    else:
        out.append(f"`analyze_mask`: {_status(rec)}")
    return out + [""]


def _tests(sec: dict[str, Any] | None) -> list[str]:
    if not sec:
        return []
    rec = sec["entries"].get("make_test", {})
    if not rec:
        return []
    out = ["## 5. Test time", "",
           f"{rec['what']}: **{rec['wall_s'] / 60:.1f} min** wall "
           f"(exit code {rec['returncode']}).", ""]
    if rec.get("folders"):
        out += ["| folder | result | wall s |", "| --- | --- | --- |"]
        out += [f"| {k} | {v['status']} | {v['wall_s']} |" for k, v in rec["folders"].items()]
        out.append("")
    return out


def _shortfalls(res: dict[str, Any]) -> list[str]:
    out = ["## What falls short", ""]
    tr = res.get("training", {})
    for key, d in tr.get("derived", {}).items():
        if d.get("fp32_meets_target") is False:
            out.append(f"- {LABELS.get(key, key)}: fp32 step at {_f(d['fp32_frac'], pct=True)} "
                       f"of the fp32 peak (target {_f(d['fp32_frac_target'], pct=True)}); best "
                       f"fp32 variant {d['best_fp32_variant']} at "
                       f"{_f(d['best_fp32_frac'], pct=True)}.")
        if d.get("bf16_meets_target") is False:
            out.append(f"- {LABELS.get(key, key)}: bf16 autocast {_f(d['bf16_speedup'], '.2f')}x "
                       f"the fp32 step (target 1.5x); best bf16 variant {d['best_bf16_variant']} "
                       f"{_f(d['best_bf16_speedup'], '.2f')}x the best fp32 variant.")
    for key, d in res.get("input_pipeline", {}).get("derived", {}).items():
        r = d.get("disk_vs_memory")
        if r is not None and r < 0.9:
            out.append(f"- {LABELS.get(key, key)}: training from disk at {_f(r, '.3f')} of the "
                       "in-memory rate (target 0.9).")
    rd = res.get("rasters", {}).get("derived", {})
    if rd.get("dune_tile_overhead") is not None and rd["dune_tile_overhead"] > 0.15:
        out.append(f"- dune inference_tile: overhead {_f(rd['dune_tile_overhead'], pct=True)} "
                   "over the pure forward (target 15 %).")
    if rd.get("ice_iter_chunks_vs_bare") is not None and rd["ice_iter_chunks_vs_bare"] < 0.8:
        out.append(f"- ice chunk.py: {_f(rd['ice_iter_chunks_vs_bare'], '.2f')} of the bare "
                   "read rate (target 0.8).")
    for s, sec in res.items():
        if s == "meta":
            continue
        for k, r in sec.get("entries", {}).items():
            if r.get("status") != OK:
                out.append(f"- {s}/{k}: {_status(r)}")
    if len(out) == 2:
        out.append("- nothing: every target measured in this run is met.")
    return out + [""]


def _changes(res: dict[str, Any]) -> list[str]:
    """Before/after of what the bench changes itself, measured side by side in this run."""
    out = ["## Changes measured side by side (before -> after, same run)", "",
           "The bench cannot edit the subprojects; it times the candidate changes next to the "
           "code as shipped. A speed-up above 1 means the change pays on this machine. For the "
           "data loaders, two configurations are timed one after the other, so their absolute "
           "rates differ with the machine's drift; the speed-up compares their disk / memory "
           "ratios, each measured side by side.", "",
           "| where | change | before | after | speed-up |", "| --- | --- | --- | --- | --- |"]
    n0 = len(out)
    for key, d in res.get("training", {}).get("derived", {}).items():
        v = d["variants"]
        label = LABELS.get(key, key)
        pairs = [("fp32", "fp32_cl", "channels-last (fp32)"),
                 ("fp32", "bf16", "bf16 autocast (NCHW)"),
                 ("fp32", "bf16_cl", "bf16 autocast + channels-last"),
                 ("bf16", "bf16_cl", "channels-last under bf16 autocast"),
                 ("fp32", "fp32_xla", "XLA jit_compile (fp32)")]
        if "fp32_b1" in v and "fp32" in v:  # a batch change: compare images/s
            out.append(f"| {label}, training step | batch {v['fp32_b1'].get('batch')} -> "
                       f"{v['fp32'].get('batch')} (fp32) | {_f(v['fp32_b1']['images_per_s'])} "
                       f"img/s ({_f(v['fp32_b1']['frac_fp32_peak'], pct=True)} of peak) | "
                       f"{_f(v['fp32']['images_per_s'])} img/s "
                       f"({_f(v['fp32']['frac_fp32_peak'], pct=True)}) | "
                       f"{_f(v['fp32']['images_per_s'] / v['fp32_b1']['images_per_s'], '.2f')}x |")
        for a, b, what in pairs:
            if a in v and b in v:
                out.append(f"| {label}, training step | {what} | {_f(v[a]['median_s'])} s | "
                           f"{_f(v[b]['median_s'])} s | "
                           f"{_f(v[a]['median_s'] / v[b]['median_s'], '.2f')}x |")
    for key, pe in res.get("input_pipeline", {}).get("entries", {}).items():
        if pe.get("status") != OK or "default" not in pe:
            continue
        a = pe["default"]
        ra = a["disk_steps_per_s"] / a["memory_steps_per_s"]
        if "workers2" in pe:  # the shipped setting (0 workers) is "before"
            b = pe["workers2"]
            rb = b["disk_steps_per_s"] / b["memory_steps_per_s"]
            out.append(f"| {LABELS.get(key, key)}, training from disk | "
                       f"{LOADER_CONFIGS['workers2']} | {_f(a['disk_steps_per_s'])} steps/s "
                       f"({ra:.2f} of memory) | {_f(b['disk_steps_per_s'])} steps/s ({rb:.2f}) "
                       f"| {rb / ra:.2f}x of disk / memory |")
    ct = res.get("rasters", {}).get("entries", {}).get("cracknet_tiled", {})
    if ct.get("status") == OK:
        for b in ("bf16", "fp32_cl", "bf16_cl"):
            if "fp32" in ct and b in ct:
                out.append(f"| Mars-CrackNet tiled prediction | fp32 -> {b} | "
                           f"{_f(ct['fp32']['wall_s'])} s | {_f(ct[b]['wall_s'])} s | "
                           f"{_f(ct['fp32']['wall_s'] / ct[b]['wall_s'], '.2f')}x |")
    for key, d in res.get("input_pipeline", {}).get("derived", {}).items():
        rec = res["input_pipeline"]["entries"][key]
        if "generator_steps_per_s" in rec:
            out.append(f"| {LABELS.get(key, key)}, training input | Python generator -> "
                       f"tf.data | {_f(rec['generator_steps_per_s'])} steps/s | "
                       f"{_f(rec['tfdata_steps_per_s'])} steps/s | "
                       f"{_f(d['tfdata_vs_generator_training'], '.2f')}x |")
    if len(out) == n0:
        out.append("| — | nothing measured | | | |")
    # changes made to the subprojects' own code: their before/after was timed when made
    made = json.loads(SUBPROJECT_CHANGES.read_text()) if SUBPROJECT_CHANGES.is_file() else []
    if made:
        out += ["", f"Changes made to the subprojects ({_rel(SUBPROJECT_CHANGES)}; each "
                    "timed before and after when it was made, outside this run):", "",
                "| where | change | before | after | speed-up | measured |",
                "| --- | --- | --- | --- | --- | --- |"]
        out += [f"| {c['where']} | {c['change']} | {c['before']} | {c['after']} | "
                f"{c['speedup']:.2f}x | {c['measured']} |" for c in made]
    return out + [""]


def _gpu_line(res: dict[str, Any]) -> str:
    meta = res["meta"]
    gpu = res.get("gpu")
    if gpu and gpu.get("device", {}).get("gpu"):
        return (f"**GPU**: {gpu['device']['gpu']}, measured by `bench/gpu_bench.py` in a separate "
                f"run ({gpu.get('date')}); see section 6. Every other figure is CPU-only.")
    return (f"**GPU**: {meta['gpu_note']} The GPU part of the issue (images/s and fraction of "
            "the GPU's bf16/fp32 peak at the paper batches; the crater step against the seed's "
            "0.54 s per batch-16 step at 256 x 256 on a P100) is therefore not measured. "
            "`python -m bench.gpu_bench all --json gpu.json` measures it on a CUDA machine "
            "(PyTorch models natively, the Keras models under Keras's PyTorch backend) and "
            "`python -m bench.run --attach-gpu gpu.json` adds it here as section 6; that code "
            "has only been smoke-tested on the CPU (`--device cpu`), never on a GPU.")


def _gpu(gpu: dict[str, Any] | None) -> list[str]:
    if not gpu or not gpu.get("device", {}).get("gpu"):
        return []
    dev = gpu["device"]
    out = ["## 6. GPU (training steps at the paper batches)", "",
           f"{dev['gpu']} (compute capability {dev.get('capability')}, "
           f"{dev.get('memory_gib')} GiB), torch {dev.get('torch')}, CUDA {dev.get('cuda')}; "
           f"host {dev.get('host_cpu')}, {dev.get('host_cores')} cores. Run {gpu.get('date')}, "
           f"{gpu.get('wall_s', 0) / 60:.1f} min; command `{gpu.get('command')}`. Each child "
           "timed an 8192^3 `torch.mm` (fp32 without TF32, TF32, bf16) in its own process; a "
           "variant's achieved TFLOP/s are compared with the peak of its own precision.", "",
           "| model | batch x input | variant | s / step | img/s | TFLOP/s | % of peak (which) "
           "| peak mem GiB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, rec in gpu.get("entries", {}).items():
        label = LABELS.get(key, key)
        if rec.get("status") != OK:
            out.append(f"| {label} | {_status(rec)} | | | | | | |")
            continue
        d = gpu.get("derived", {}).get(key, {}).get("variants", {})
        for name, v in rec.get("variants", {}).items():
            if "median_s" not in v:
                out.append(f"| {label} | {rec.get('batch')} x {rec.get('input')} | {name} | "
                           f"{_status(v)} | | | | |")
                continue
            dv = d.get(name, {})
            comp = f", compile {v['compile_s']} s" if v.get("compile_s") is not None else ""
            out.append(f"| {label} | {rec.get('batch')} x {rec.get('input')} | {name}{comp} | "
                       f"{_f(v['median_s'])} | {_f(v['images_per_s'])} | "
                       f"{_f(dv.get('achieved_tflops'))} | {_f(dv.get('frac_peak'), pct=True)} "
                       f"({dv.get('vs_peak_of')}) | {_f(v.get('peak_mem_gib'))} |")
    cr = gpu.get("derived", {}).get("crater_resunet", {})
    if cr.get("seed_p100_s_per_step") is not None:
        out += ["", f"Crater ResNet-UNet against the seed's figure (batch 16, 256 x 256, "
                    f"{cr['seed_p100_s_per_step']} s per step on a P100): "
                    f"{_f(cr.get('speedup_vs_seed_p100_fp32'), '.2f')}x faster in fp32, "
                    f"{_f(cr.get('speedup_vs_seed_p100_best'), '.2f')}x in the best variant "
                    f"({cr.get('best_variant')})."]
    return out + [""]


SUBPROJECTS = ("mars_cracknet", "dune_vlm", "s5mars_ssl", "crater_resunet", "ice_patch_cnn")


def _suggest_training(key: str, res: dict[str, Any]) -> list[str]:
    tr = res.get("training", {})
    rec = tr.get("entries", {}).get(key, {})
    d = tr.get("derived", {}).get(key)
    if not d:
        return []
    out = []
    m = res["meta"]["machine"]
    if d.get("fp32_meets_target") is False:
        out.append(f"training step at {_f(d['fp32_frac'], pct=True)} of the fp32 matmul peak "
                   f"(target {_f(d['fp32_frac_target'], pct=True)}).")
        cl = d.get("channels_last_speedup_fp32")
        if cl is not None:
            out.append(f"channels-last memory format measured {cl:.2f}x on the fp32 step: " +
                       ("worth adopting (`model.to(memory_format=torch.channels_last)` and the "
                        "batches likewise)." if cl >= 1.05 else "no gain here; keep NCHW."))
        xla = d.get("xla_speedup_fp32")
        if xla is not None:
            out.append(f"XLA (`jit_compile=True`) measured {xla:.2f}x on the fp32 step: " +
                       ("worth enabling in the training profile." if xla >= 1.05
                        else "no gain here; keep it off."))
        ref = tr.get("derived", {}).get("reference", {})
        if key != "reference" and ref.get("fp32_frac") is not None:
            rf = _f(ref["fp32_frac"], pct=True)
            out.append(f"(the bench's plain PyTorch conv net reaches {rf} in the same run: the "
                       "gap is the model's own mix of layers, not the machine.)"
                       if ref["fp32_frac"] >= d["fp32_frac_target"] else
                       f"(the bench's plain PyTorch conv net reaches only {rf} in the same run: "
                       "on this CPU a convolution training step itself falls well short of the "
                       "matmul peak.)")
    bf = d.get("best_bf16_speedup")
    native = m.get("torch_bf16_native")
    if bf is not None and bf < 1.5:
        out.append(f"bf16 ({d['best_bf16_variant']}) measured {bf:.2f}x the best fp32 variant" +
                   (f": this CPU ({m.get('torch_cpu_capability')}) has no native bf16, so oneDNN "
                    "emulates it. Keep fp32 for CPU runs; use bf16 autocast only on CPUs with "
                    "AVX512-BF16/AMX or on a GPU." if native is False else "."))
    elif rec.get("skipped_variants", {}).get("bf16") and "keras" in LABELS.get(key, "").lower():
        out.append(f"mixed_bfloat16 {rec['skipped_variants']['bf16']}; keep float32 on this "
                   "machine and try mixed_bfloat16 on AVX512-BF16/AMX CPUs or GPUs.")
    elif rec.get("skipped_variants") and native is False:
        ref = tr.get("derived", {}).get("reference", {})
        out.append("bf16 not timed on this model: this CPU has no native bf16 (the bench's conv "
                   f"net measured {_f(ref.get('best_bf16_speedup'), '.2f')}x); keep fp32 on "
                   "this machine, bf16 autocast on AVX512-BF16/AMX CPUs or GPUs.")
    return out


def _suggest_pipeline(key: str, res: dict[str, Any]) -> list[str]:
    ip = res.get("input_pipeline", {})
    rec = ip.get("entries", {}).get(key, {})
    d = ip.get("derived", {}).get(key)
    if not d:
        return []
    out = []
    if "memory_steps_per_s" in rec:  # Keras
        r, mem = d.get("disk_vs_memory"), rec["memory_steps_per_s"]
        only = rec.get("tfdata_only_batches_per_s")
        if r is not None and r < 0.9:
            out.append(f"tf.data-fed training at {r:.2f} of the in-memory rate; the pipeline "
                       f"alone delivers {_f(only)} batches/s for {_f(mem)} steps/s of "
                       "training, " + ("so it is fast enough and the loss is its threads "
                                       "competing with training for the 2 cores: cache the "
                                       "decoded tiles (`.cache()`) and keep the prefetch."
                                       if only and only > 2 * mem else
                                       "so decoding is the bottleneck: cache decoded tiles or "
                                       "pre-resize them once on disk."))
        g = d.get("tfdata_vs_generator_training")
        gen_only = rec.get("generator_only_batches_per_s")
        if g is not None:
            out.append(f"tf.data vs the original per-step Python generator: {g:.2f}x in "
                       "training" + (" (keep tf.data)." if g >= 1 else ".") + (
                           f" Both deliver batches over {int(min(only, gen_only) / mem)}x "
                           "faster than training takes them, so on this CPU the choice "
                           "hardly matters and the difference in training is noise; tf.data's "
                           "prefetch pays where the step is fast (a GPU)."
                           if only and gen_only and min(only, gen_only) > 100 * mem else ""))
        return out
    r = d.get("disk_vs_memory")
    c = rec.get("default", {})
    if r is not None and r < 0.9:
        only, mem = c.get("loader_only_batches_per_s"), c.get("memory_steps_per_s")
        out.append(f"DataLoader-fed training at {r:.3f} of the in-memory rate ({c.get('workers')}"
                   f" workers); the loader alone delivers {_f(only)} batches/s for {_f(mem)} "
                   "steps/s of training, " +
                   ("so it is fast enough and the loss is its worker processes competing with "
                    "the training threads for the 2 cores: on a 2-core machine cap "
                    "`num_workers` + training threads at the core count, or cache decoded "
                    "crops." if only and mem and only > 2 * mem else
                    "so reading/augmenting is the bottleneck: cache decoded images in memory "
                    "and augment on uint8 before the float conversion."))
    w2 = rec.get("workers2")
    if w2 and c.get("disk_steps_per_s"):
        sp = ((w2["disk_steps_per_s"] / w2["memory_steps_per_s"])
              / (c["disk_steps_per_s"] / c["memory_steps_per_s"]))
        out.append(f"`num_workers` 0 -> 2 measured {sp:.2f}x on training from disk (ratio of "
                   "the disk / memory ratios)" +
                   (": worth making the default." if sp >= 1.05 else ": no gain on 2 cores."))
        m0, m2 = c.get("memory_steps_per_s"), w2.get("memory_steps_per_s")
        if m0 and m2 and m2 < 0.8 * m0:
            out.append(f"(in that configuration even the in-memory rate fell from {_f(m0)} to "
                       f"{_f(m2)} steps/s, so this comparison is probably dominated by the "
                       "two worker processes contending with the training threads for the 2 "
                       "cores.)")
    return out


def _suggest_rasters(key: str, res: dict[str, Any]) -> list[str]:
    rd = res.get("rasters", {}).get("derived", {})
    out = []
    if key == "dune_vlm":
        ov = rd.get("dune_tile_overhead")
        if ov is not None and ov > 0.15:
            out.append(f"inference_tile overhead {_f(ov, pct=True)} over the pure forward "
                       "(target 15 %): overlap reading the next block with the forward "
                       "(a reader thread) and blend in place.")
        g, px = rd.get("dune_rss_growth"), rd.get("dune_pixels_ratio")
        if g is not None and g > 1.5:
            out.append(f"peak RSS grows {g:.2f}x for {_f(px, '.0f')}x the pixels: some buffer "
                       "is sized by the raster, not the block.")
    if key == "ice_patch_cnn":
        r = rd.get("ice_iter_chunks_vs_bare")
        if r is not None and r < 0.8:
            out.append(f"chunk.py at {r:.2f} of a bare rasterio read (target 0.8).")
        g = rd.get("ice_rss_growth")
        if g is not None and g > 1.5:
            out.append(f"peak RSS of chunking grows {g:.2f}x with the image.")
    if key == "mars_cracknet":
        ov = rd.get("cracknet_fp32_overhead")
        if ov is not None and ov > 0.15:
            out.append(f"tiled prediction spends {_f(ov, pct=True)} beyond the pure forward of "
                       "its tiles: batch several tiles per forward and overlap reading/writing "
                       "with compute.")
    return out


def _suggest_crack(res: dict[str, Any]) -> list[str]:
    rec = res.get("crack_analysis", {}).get("entries", {}).get("analyze_mask", {})
    top = rec.get("profile", {}).get("top", [])
    rows = [r for r in top if "analyze_mask" not in r["function"]][:3]
    if not rows:
        return []
    d = res.get("crack_analysis", {}).get("derived", {}).get("analyze_mask", {})
    return [f"analyze_mask takes {_f(d.get('analyze_mask_s_per_mpx'))} s per megapixel; the "
            "largest costs under it: " + "; ".join(
                f"`{r['function']}` {_f(r['share'], pct=True)} in {r['calls']} call(s)"
                for r in rows) + "." + (
            " Where one function is called several times (e.g. a skeleton graph rebuilt per "
            "pruning pass), building it once and pruning on the graph is the first thing to "
            "try." if any(int(r["calls"]) > 2 for r in rows) else "")]


def _suggestions(res: dict[str, Any]) -> list[str]:
    out = ["## Suggested changes per subproject", "",
           "Derived from the figures above (the bench does not edit the subprojects). A "
           "subproject with nothing listed met every target measured for it.", ""]
    for key in SUBPROJECTS:
        items = (_suggest_training(key, res) + _suggest_pipeline(key, res) +
                 _suggest_rasters(key, res) + (_suggest_crack(res) if key == "mars_cracknet"
                                               else []))
        measured = any(key in res.get(sec, {}).get("entries", {})
                       for sec in ("training", "input_pipeline"))
        out.append(f"**{key}**" + ("" if items else ": nothing falls short here." if measured
                                   else ": not measured in this run."))
        out += [f"- {t}" for t in items]
        out.append("")
    return out
