"""`make reproduce-s5mars`: the quick-profile S5Mars reproduction on synthetic scenes.

1. generate the synthetic S5Mars-layout set (64 train scenes, 1/8 labelled, 16 test; reused),
2. compute object proposals in SAM's record format (felzenszwalb; no SAM weights offline),
3. train the supervised baseline and the full method (mean teacher + AugIN + SAM-Mix +
   soft-to-hard) from the same labelled split, with the exact 40.47M-parameter model,
4. evaluate both (mIoU, per-class IoU; the teacher for the semi run),
5. write ``results/s5mars_ssl/``: summary.json, metrics.json, resolved configs, log, figures.

``--rows all`` also runs the middle ablation rows (mean teacher, + AugIN, + SAM-Mix); each row
is a config in ``exps/quick/``. Finished runs are reused (their ``eval.json``), interrupted ones
resumed from ``last.pt``; ``--fresh`` retrains.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROWS = {
    "supervised": ("supervised", "supervised only (1/8 labels)"),
    "mean_teacher": ("semi", "mean teacher"),
    "augin": ("semi", "+ AugIN"),
    "sammix": ("semi", "+ AugIN + SAM-Mix"),
    "full": ("semi", "+ AugIN + SAM-Mix + soft-to-hard (full method)"),
}
DEFAULT_ROWS = ["supervised", "full"]


def _prediction_figure(runs: dict[str, Path], root: Path, stems: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from s5mars_ssl.augseg.dataset.augmentation import normalize
    from s5mars_ssl.augseg.dataset.mars import load_pair
    from s5mars_ssl.checkpoint import load_model
    from s5mars_ssl.constants import CLASSES, PALETTE, colorize
    from shared import atomic_path

    models = {name: load_model(d / "last.pt", "teacher") for name, d in runs.items()}
    cols = 2 + len(models)
    fig, axes = plt.subplots(len(stems), cols, figsize=(2.6 * cols, 2.1 * len(stems) + 0.6))
    axes = np.atleast_2d(axes)
    for r, stem in enumerate(stems):
        img, lbl = load_pair(root, stem)
        panels = [(img, "image"), (colorize(lbl), "sparse label")]
        for name, (model, cfg, used) in models.items():
            x = torch.from_numpy(normalize(img, np.asarray(cfg["dataset"]["mean"], np.float32),
                                           np.asarray(cfg["dataset"]["std"], np.float32)))[None]
            with torch.no_grad():
                pred = model(x).argmax(1)[0].numpy()
            panels.append((colorize(pred), f"{name} ({used})"))
        for c, (arr, title) in enumerate(panels):
            axes[r, c].imshow(arr)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(title, fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=PALETTE[i] / 255) for i in range(len(CLASSES))]
    fig.legend(handles, CLASSES, loc="lower center", ncol=len(CLASSES), fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m s5mars_ssl.reproduce",
        description="Quick-profile S5Mars reproduction on synthetic scenes: data, proposals, "
                    "supervised baseline and full method, evaluation, results/s5mars_ssl/.")
    p.add_argument("--rows", default="default",
                   help="comma list of ablation rows (supervised, mean_teacher, augin, sammix, "
                        "full), 'all', or 'default' (supervised,full)")
    p.add_argument("--iterations", type=int, default=None,
                   help="override the quick profile's iterations (same for every row)")
    p.add_argument("--data", default="datasets/s5mars_ssl/synthetic", help="dataset folder")
    p.add_argument("--runs", default="runs/s5mars_ssl/reproduce", help="run folders")
    p.add_argument("--results", default="results/s5mars_ssl", help="results folder")
    p.add_argument("--fresh", action="store_true", help="retrain even if finished runs exist")
    args = p.parse_args(argv)
    rows = (list(ROWS) if args.rows == "all" else DEFAULT_ROWS if args.rows == "default"
            else [r.strip() for r in args.rows.split(",") if r.strip()])
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows:
        print(f"error: unknown row(s) {bad}; choose from {list(ROWS)}", file=sys.stderr)
        return 2
    if args.iterations is not None and args.iterations < 1:
        print("error: --iterations must be positive", file=sys.stderr)
        return 2

    t0 = time.time()
    from s5mars_ssl.runtime import passive_openmp

    passive_openmp()
    import json
    import shutil

    import torch
    import yaml

    from s5mars_ssl.augseg.trainer import train
    from s5mars_ssl.augseg.utils.config import (
        PACKAGE_DIR,
        apply_overrides,
        load_config,
        resolve_path,
        validate,
    )
    from s5mars_ssl.constants import CLASSES
    from s5mars_ssl.data.synthetic import generate
    from s5mars_ssl.evaluate import evaluate_checkpoint
    from s5mars_ssl.sam_masks import run as make_masks
    from shared import atomic_write_json, atomic_write_text
    from shared.results import write_summary

    torch.set_num_threads(2)
    data = resolve_path(args.data)
    runs_root = resolve_path(args.runs)
    results = resolve_path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_lines.append(line)

    log(f"generating / reusing synthetic scenes in {data}")
    generate(data, n_train=64, n_test=16, height=192, width=256, labeled_every=8, seed=0)
    t_data = time.time()
    log("object proposals in SAM's record format (felzenszwalb; SAM weights unavailable)")
    make_masks(data / "images", data / "sam_masks", proposer="felzenszwalb",
               stems_file=data / "train.json")
    t_masks = time.time()
    log(f"data {t_data - t0:.0f} s, proposals {t_masks - t_data:.0f} s")

    reported = load_config(PACKAGE_DIR / "exps" / "s5mars" / "config_semi_mix.yaml")["reported"]
    metrics, run_dirs = {}, {}
    for row in rows:
        mode, label = ROWS[row]
        cfg = load_config(PACKAGE_DIR / "exps" / "quick" / f"{row}.yaml")
        ov = [f"dataset.root={data}"]
        if args.iterations:
            ov.append(f"trainer.iterations={args.iterations}")
        cfg = apply_overrides(cfg, ov)
        validate(cfg)
        run_dir = runs_root / cfg["name"]
        run_dirs[row] = run_dir
        done = run_dir / "eval.json"
        if args.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        prev = json.loads(done.read_text()) if done.exists() else None
        if prev and prev.get("iterations") == cfg["trainer"]["iterations"]:
            log(f"{row}: reusing the finished run {run_dir}")
            res = prev
        else:
            resume = (run_dir / "last.pt").exists() and not prev
            if not resume and run_dir.exists():
                shutil.rmtree(run_dir)  # a finished run with other settings: start over
            log(f"{row}: training ({mode}, {cfg['trainer']['iterations']} iterations"
                f"{', resuming' if resume else ''})")
            tr = time.time()
            res = train(cfg, run_dir, mode=mode, resume=resume, progress=True)
            log(f"{row}: mIoU {res['miou'] * 100:.2f} in {time.time() - tr:.0f} s")
        metrics[row] = {"setting": label, "reused": bool(prev and res is prev), **res}
        if mode == "semi":
            # the student of a semi run, for comparison with the evaluated teacher
            st = evaluate_checkpoint(run_dir / "last.pt", "student", data_root=data)
            metrics[row]["student"] = {"miou": st["miou"], "per_class_iou": st["per_class_iou"]}
            log(f"{row}: student mIoU {st['miou'] * 100:.2f}")
        shutil.copyfile(run_dir / "config.yaml", results / f"config_{row}.yaml")
        shutil.copyfile(run_dir / "curves.png", results / f"curves_{row}.png")
        shutil.copyfile(run_dir / "log.txt", results / f"train_log_{row}.txt")

    test_stems = json.loads((data / "test.json").read_text())
    _prediction_figure({r: run_dirs[r] for r in rows}, data, test_stems[:4],
                       results / "predictions.png")
    wall = time.time() - t0
    out_rows = []
    for row in rows:
        m = metrics[row]
        rep = reported.get("miou_full") if row == "full" else (
            reported.get("miou_supervised") if row == "supervised" else None)
        out_rows.append({"setting": m["setting"], "metric": "mIoU (%), teacher" if
                         m["evaluated"] == "teacher" else "mIoU (%)", "reported": rep,
                         "ours": round(m["miou"] * 100, 2)})
        if "student" in m:
            out_rows.append({"setting": m["setting"], "metric": "mIoU (%), student",
                             "reported": None, "ours": round(m["student"]["miou"] * 100, 2)})
    for row in rows:
        for cls in CLASSES:
            v = metrics[row]["per_class_iou"][cls]
            out_rows.append({"setting": f"{metrics[row]['setting']}: {cls}", "metric": "IoU (%)",
                             "reported": None, "ours": None if v is None else round(v * 100, 1)})
    atomic_write_json(results / "metrics.json", {
        "data": "synthetic S5Mars-layout scenes (64 train, 1/8 labelled = 8, 16 test, 256x192)",
        "profile": "quick", "rows": metrics, "reported": reported,
        "timing_s": {"data": t_data - t0, "proposals": t_masks - t_data, "total": wall,
                     "cpu_main_process": time.process_time(),
                     "train_per_row": {r: metrics[r].get("train_time_s") for r in rows}},
        "reused_rows": [r for r in rows if metrics[r]["reused"]]})
    atomic_write_text(results / "reproduce_log.txt", "\n".join(log_lines) + "\n")
    atomic_write_text(results / "resolved_paper_config.yaml", yaml.safe_dump(
        load_config(PACKAGE_DIR / "exps" / "s5mars" / "config_semi_mix.yaml"), sort_keys=False))
    notes = ("Synthetic rover-view scenes, not S5Mars; model trained from scratch (no ImageNet "
             "encoder offline) for a few dozen iterations; SAM-Mix objects from a felzenszwalb "
             "proposer in SAM's JSON format (no SAM weights offline). The paper gives no number "
             f"in the seed: {reported.get('source')}. Claim: {reported.get('claim')} "
             "The teacher is evaluated (as in the paper); with the EMA rule min(1 - 1/(i+1), "
             "0.996) the teacher of a run shorter than 250 iterations is the plain average of "
             "every student since the random initialisation, so the student's mIoU is listed "
             "too.")
    reused = [r for r in rows if metrics[r]["reused"]]
    if reused:
        notes += (f" Rows {reused} were reused from earlier finished runs; wall_time_s covers "
                  "this invocation only.")
    write_summary(paper="s5mars_ssl", rows=out_rows,
                  data="synthetic S5Mars-layout scenes (64 train, 8 labelled, 16 test)",
                  profile="quick", wall_time_s=wall, results_dir=results, notes=notes,
                  extra={"iterations": {r: metrics[r]["iterations"] for r in rows}})
    log(f"done in {wall / 60:.1f} min -> {results}")
    atomic_write_text(results / "reproduce_log.txt", "\n".join(log_lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
