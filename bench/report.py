"""BENCHMARKS.md from the record of ``bench/run.py`` (every figure read from the JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NAMES = {"mars_cracknet": "Mars-CrackNet ResUNet (torch)", "dune_vlm": "dune SegFormer fusion "
         "(torch)", "s5mars_ssl": "S5Mars DeepLabv3+ R50 (torch)",
         "crater_resunet": "crater ResNet-UNet (Keras/TF)",
         "ice_patch_cnn": "ice Xception chunk CNN (Keras/TF)"}


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f} %"


def _failed(section: dict[str, Any]) -> list[str]:
    return [f"- {NAMES.get(k, k)}: **{r['status']}**: {r.get('reason')}"
            for k, r in section.items() if r.get("status") != "ok"]


def _peak_cell(p: dict[str, Any] | None) -> str:
    if not p:
        return "—"
    parts = [f"{k} {v:.0f}" for k, v in p["measured_gflops"].items()]
    return f"**{p['peak_gflops']:.0f}** ({p['source']}; measured: {', '.join(parts)})"


def training(sec: dict[str, Any]) -> list[str]:
    out = ["## 1. Training-step utilisation", "",
           "One full training step (forward, loss, backward, optimiser) built from the "
           "subproject's own profile, model, optimiser, loss and synthetic data (the profile's "
           "batch capped for this CPU; the profile's batch is named). FLOPs: "
           "`torch.utils.flop_counter.FlopCounterMode` (PyTorch; convolution backward by "
           "`bench.torch_bench.conv_backward_flops`, since torch's own formula ignores groups "
           "and counted the backward of a 256-group depthwise 3x3 128 times over); for Keras an "
           "analytic count "
           "of the conv/dense layers, times 3 for forward + backward. **Peak**: the largest of "
           "the kernels measured in the same child process before and after the model, the "
           "best of 5 runs each and the better of the two times kept (`torch.mm` 2048^3 and "
           "4096^3, a 3x3 `conv2d` and a 1x1 `conv2d` (oneDNN's GEMM path) in PyTorch, "
           "`tf.linalg.matmul` 2048^3 and 4096^3 in Keras), and the CPU's theoretical FMA "
           "peak at the clock `/proc/cpuinfo` reports; "
           "its source is named per row. The step time is the median. No fraction can exceed "
           "100 %: the bench refuses one that does.", "",
           "| model | profile | input | batch (profile) | GFLOP / step | fp32 s / step | "
           "GFLOP/s | % of fp32 peak | fp32 peak GFLOP/s (source) | bf16 s / step | bf16 "
           "speed-up | % of bf16 peak | bf16 peak GFLOP/s (source) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k, r in sec.items():
        if r.get("status") != "ok":
            continue
        v32, v16 = r["variants"]["fp32"], r["variants"].get("bf16", {})
        # bf16 speed-up: fp32 median step / bf16 median step (same model, same batch)
        bf = ((_f(v16.get("median_s")), f"{v32['median_s'] / v16['median_s']:.2f}x",
               _pct(v16.get("utilisation")), _peak_cell(r["peaks"].get("bf16")))
              if "median_s" in v16
              else (f"— ({v16.get('skipped', 'not run')})", "—", "—", "—"))
        out.append(f"| {NAMES.get(k, k)} | {r['profile']} | {r['input']} | {r['batch']} "
                   f"({r['paper_batch']}) | {r['flops_per_step'] / 1e9:.1f} | "
                   f"{_f(v32['median_s'])} | {v32['achieved_gflops']:.1f} | "
                   f"{_pct(v32['utilisation'])} | {_peak_cell(r['peaks']['fp32'])} | "
                   f"{' | '.join(bf)} |")
    theory = next((r["peaks"]["theoretical"] for r in sec.values() if r.get("status") == "ok"),
                  None)
    if theory:
        out += ["", f"Theoretical peak: {theory['basis']} = {_f(theory['fp32_gflops'])} GFLOP/s "
                    f"fp32, {_f(theory['bf16_gflops'])} GFLOP/s bf16 (assumptions in "
                    "`bench/common.py`)."]
    out += ["", *[f"- {NAMES.get(k, k)}: {r['notes']}" for k, r in sec.items()
                  if r.get("status") == "ok"], *_failed(sec), ""]
    return out


def loaders(sec: dict[str, Any], target: float) -> list[str]:
    out = ["## 2. Data loaders against memory", "",
           f"The fp32 step of section 1 fed by the subproject's own loader reading its synthetic "
           f"files, against the same batches already in memory, timed in blocks ordered memory, "
           f"disk, disk, memory in the same process, each block about 15 s of steps (2 to 6). "
           f"Target: at least {target} of the in-memory rate. The last column is the loader "
           "alone (a fresh pass, its first batch untimed): the rate it could feed the step at.",
           "", "| model | steps / block | memory steps/s | disk steps/s | disk / memory | target "
           "| loader alone batches/s |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, r in sec.items():
        if r.get("status") == "ok":
            ld = r["loader"]
            alone = _f(ld["alone_batches_per_s"]) if "alone_batches_per_s" in ld else "—"
            out.append(f"| {NAMES.get(k, k)} | {ld.get('steps_per_block', '—')} | "
                       f"{_f(ld['memory_steps_per_s'])} | {_f(ld['disk_steps_per_s'])} | "
                       f"{ld['disk_vs_memory']:.2f} | "
                       f"{'yes' if ld.get('meets_target') else '**no**'} | {alone} |")
    return [*out, ""]


def tiling(sec: dict[str, Any], target: float) -> list[str]:
    out = ["## 3. Tiled inference against the pure forward", "",
           "Each subproject's own large-image predictor on an image from its own synthetic "
           "generator (one untimed call first), against the model's forward alone replayed "
           "over exactly the windows (and batch shapes) the predictor sent to the model, timed "
           "pure, tiled, tiled, pure (a drift of the machine weighs on both). "
           f"Target: overhead at most {100 * target:.0f} %.", "",
           "| predictor | input | windows predicted (planned) | forward calls | tiled s | "
           "pure forward s | overhead | target |", "| --- | --- | --- | --- | --- | --- | "
           "--- | --- |"]
    for r in sec.values():
        if r.get("status") == "ok":
            planned = f" ({r['windows_planned']})" if r.get("windows_planned") else ""
            out.append(f"| `{r['predictor']}` | {r.get('raster') or r.get('image')} | "
                       f"{r['windows_predicted']}{planned} | {r['forward_calls']} | "
                       f"{_f(r['tiled_s'])} | {_f(r['pure_forward_s'])} | "
                       f"{100 * r['overhead']:.1f} % | "
                       f"{'yes' if r.get('meets_target') else '**no**'} |")
    notes = [f"- `{r['predictor']}` ({r.get('reader')}): decoding every block of its input "
             f"once, alone, takes {_f(r['input_decode_s'])} s ("
             f"{100 * r['input_decode_s'] / r['pure_forward_s']:.0f} % of the pure forward); "
             "the mapper decodes each block once, the next rows in a background thread, which "
             "hides it only where the forward leaves a core idle."
             for r in sec.values() if r.get("status") == "ok" and "input_decode_s" in r]
    return [*out, *(["", *notes] if notes else []), *_failed(sec), ""]


def scenes(sec: dict[str, Any], target: float) -> list[str]:
    out = ["## 4. Scenes per minute in-process and on a Dask cluster", "",
           "The ice predictor (`ice_patch_cnn.predict`) over the same generated scenes: in this "
           "process (the model loaded before, as the CLI does), on a `LocalCluster` of one "
           "worker with the same threads (`--scheduler local:1`) and of two workers with half "
           "the threads each (`local:2`). Each cluster is started and its model loaded on "
           "every worker before the timed runs; that start-up is its own column. Runs "
           "alternate in-process, local:1, local:2; median of the repetitions after an "
           f"untimed one. Target: local:1 at most {100 * target:.0f} % slower than in-process.",
           "", "| predictor | scenes | scene | in-process scenes/min | local:1 scenes/min | "
           "local:2 scenes/min | local:1 overhead | target | local:2 speed-up | cluster "
           "start + model load s (local:1, local:2) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sec.values():
        if r.get("status") == "ok":
            rate, start = r["scenes_per_min"], r["cluster_start_s"]
            out.append(f"| `{r['predictor']}` | {r['scenes']} | {r['scene']} | "
                       f"{_f(rate['in_process'])} | {_f(rate['local_1'])} | "
                       f"{_f(rate['local_2'])} | {100 * r['overhead_local_1']:.1f} % | "
                       f"{'yes' if r.get('meets_target') else '**no**'} | "
                       f"{r['speedup_local_2']:.2f}x | {_f(start['local_1'])}, "
                       f"{_f(start['local_2'])} |")
    return [*out, *_failed(sec), ""]


def render_markdown(res: dict[str, Any], json_path: Path) -> str:
    meta, m = res["meta"], res["meta"]["machine"]
    lines = ["# Benchmarks", "",
             f"Written by `make bench` (`python -m bench.run`); raw figures in "
             f"[`results/bench.json`](results/bench.json). Run {meta['date']}, "
             f"{meta['wall_s'] / 60:.1f} min; command `{meta['command']}`."]
    for extra in meta.get("merged", []):
        em = extra.get("machine", {})
        lines.append(f"Entries re-run with `--merge`: `{extra['command']}` ({extra['date']}, "
                     f"{em.get('cpu')} {em.get('cpu_id', '')} at {_f(em.get('cpu_mhz'), 4)} "
                     f"MHz, bf16: {em.get('bf16')}); each entry's ratios come from its own "
                     "child process.")
    if meta["quick"]:
        lines += ["", "> **Quick mode**: quick profiles at tiny sizes, one repetition, run to "
                      "test the bench. These numbers say nothing about speed."]
    first = "of the first run (the entries not re-run above)" if meta.get("merged") else ""
    lines += ["", f"**Machine** {first}: {m.get('cpu')}, {m.get('cores')} cores at "
                  f"{_f(m.get('cpu_mhz'), 4)} MHz, Python {m.get('python')}; "
                  f"{meta['threads']} thread(s) per child, median of {meta['reps']} timed "
                  f"repetitions after a warm-up. CPU features: {', '.join(m['cpu_flags'])}; "
                  f"bf16: {m['bf16']}. No GPU was used.", ""]
    t = meta["targets"]
    if "train" in res:
        lines += training(res["train"]) + loaders(res["train"], t["disk_vs_memory"])
    if "tiling" in res:
        lines += tiling(res["tiling"], t["tile_overhead"])
    if "scenes" in res:
        lines += scenes(res["scenes"], t.get("cluster_overhead", 0.10))
    vs = Path(json_path).parent / VS_ORIGINAL_JSON  # section 5 (bench/vs_original.py)
    if not meta["quick"] and vs.is_file():
        lines += render_vs_original(json.loads(vs.read_text(encoding="utf-8")))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- 5. against the original
VS_ORIGINAL_JSON = "bench_vs_original.json"
VS_STATUS = {"not_run": "not run: no --original path", "no_original": "no public original code"}


def _vs_cell(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}g}"


def render_vs_original(res: dict[str, Any]) -> list[str]:
    """Section 5 of BENCHMARKS.md from ``results/bench_vs_original.json``."""
    meta, m = res["meta"], res["meta"]["machine"]
    out = ["## 5. Training step against the original code", "",
           f"Written by `make bench-vs-original` (`python -m bench.vs_original`); raw figures "
           f"in [`results/{VS_ORIGINAL_JSON}`](results/{VS_ORIGINAL_JSON}). Run {meta['date']}, "
           f"{meta['wall_s'] / 60:.1f} min; command `{meta['command']}`.", ""]
    if meta.get("quick"):
        out += ["> **Quick mode**: tiny inputs, few repetitions, run to test the bench. These "
                "numbers say nothing about speed.", ""]
    out += ["One training step (forward, loss, backward, optimiser step) of our model against "
            "the model of the original public code, loaded at run time from the user's own "
            "checkout (never copied into this repository), with the same architecture, input, "
            "loss and optimiser, both in fp32 and in the same child process (one per "
            "framework: torch, then Keras/TensorFlow). After one untimed step each, "
            f"{meta['reps']} repetitions alternate ours and the original (ours first on even "
            "repetitions, the original first on odd ones). **original / ours** is the median "
            "original step over the median our step: above 1.0 ours is faster. The 95 % "
            "interval is the Student t interval of the logarithms of the paired "
            "per-repetition ratios, back-transformed; **at least 1.0x** is *yes* when the "
            "whole interval lies above 1.0, *no* when it lies below, *undecided* otherwise. "
            "Our step under bf16 autocast is timed after the pairs where the CPU has native "
            "bf16 (extra columns, not alternated: our bf16 step and the original's fp32 step "
            "over it, which is what our default `--precision auto` gives against the "
            "original, which has no mixed precision; fp32 against fp32 is the headline).", "",
            f"**Machine**: {m.get('cpu')}, {m.get('cores')} cores at "
            f"{_f(m.get('cpu_mhz'), 4)} MHz, Python {m.get('python')}; {meta['threads']} "
            f"thread(s) per child. CPU features: {', '.join(m.get('cpu_flags', []))}; bf16: "
            f"{m.get('bf16')}. No GPU was used.", "",
            "| model | original (loaded from the checkout) | input | parameters ours / "
            "original | ours fp32 s / step | original fp32 s / step | original / ours | 95 % "
            "interval | at least 1.0x | ours bf16 s / step | original fp32 / ours bf16 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes = []
    for k, r in res["entries"].items():
        name = NAMES.get(k, k)
        repo = meta.get("repos", {}).get(k)
        if r.get("status") != "ok":
            why = VS_STATUS.get(r.get("status"), f"**{r.get('status')}**: {r.get('reason')}")
            out.append(f"| {name} | {repo or '—'} | — | — | — | — | — | — | {why} | — | — |")
            continue
        f, b = r["fp32"], r.get("bf16", {})
        ci = f.get("ci95")
        bf = (_vs_cell(b["ours_median_s"]) if "ours_median_s" in b
              else f"— ({b.get('skipped', 'not run')})")
        bf_ratio = (f"{f['original_median_s'] / b['ours_median_s']:.2f}x"
                    if b.get("ours_median_s") else "—")
        out.append(f"| {name} | {repo}: {r['loaded']} | {r['input']} | "
                   f"{r['params_ours']:,} / {r['params_original']:,} | "
                   f"{_vs_cell(f['ours_median_s'])} | {_vs_cell(f['original_median_s'])} | "
                   f"**{f['ratio']:.2f}x** | "
                   f"{'—' if ci is None else f'{ci[0]:.2f}-{ci[1]:.2f}x'} | "
                   f"{f['at_least_1x']} | {bf} | {bf_ratio} |")
        notes.append(f"- {name}: loss {r['loss']}; {r['optimizer']}; ours "
                     f"`{r['ours_built']}`"
                     + (f"; original patched: {r['patched']}" if r.get("patched") else "")
                     + f"; paired ratios {', '.join(f'{v:.2f}' for v in f['paired_ratios'])}.")
    if not any(r.get("status") == "ok" for r in res["entries"].values()):
        out += ["", "> **Nothing measured yet**: no `--original` path was given (see below)."]
    out += ["", *notes, *([""] if notes else []),
            "Getting the originals: `git clone` each repository named in the table into a "
            "folder outside this repository (the crater notebook, `crater-detection.ipynb`, "
            "is also in scifre/lunar-crater-detection) and pass it, e.g. `make "
            "bench-vs-original "
            "ORIGINALS=\"mars_cracknet=/src/Mars-CrackNet dune_vlm=/src/MADS "
            "s5mars_ssl=/src/S5Mars_SSL crater_resunet=/src/crater-detection\"`.", ""]
    return out
