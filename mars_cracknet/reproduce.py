"""`make reproduce-cracks`: the paper's experiment end to end with the quick profile.

1. Generate the synthetic EDC/MIC dataset (``datasets/mars_cracknet/synthetic``; reused if
   present).
2. Train Mars-CrackNet (ResUNet) in modes a (``mars``), b (``earth_mars``) and c (``semi``:
   auto-encoder pre-training on the unlabelled Earth + Mars images, then fine-tuning on MIC).
3. Evaluate each on the Mars test set (precision, recall, Dice, Jaccard; per image, averaged).
4. Predict MIC (Mars test) and EDC (Earth) masks with the mode-c model, run the crack-network
   analysis on both and compare them (two-sample KS per measure); the same on the ground truth.
5. Write ``results/mars_cracknet/``: summary.json, modes.csv, metrics.json, ks.csv,
   compare.pdf, curves.png, examples.png, config.yml, reproduce.log.

Runs finished earlier (``runs/mars_cracknet/reproduce/<mode>/results.json``) are reused;
interrupted ones resume. ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MODES = (("a", "mars"), ("b", "earth_mars"), ("c", "semi"))
METRICS = ("precision", "recall", "dice", "jaccard")
# dataset size of the quick reproduction (see data/synthetic.py for the meaning)
QUICK_DATA = {"n_mars_large": 2, "large_size": 384, "crops_per_large": 12, "crop_size": 128,
              "n_mars_test": 8, "test_size": 128, "n_earth": 24, "earth_size": 160,
              "n_earth_unlabelled": 24, "n_mars_unlabelled": 24, "unlabelled_size": 160}


class Tee(io.TextIOBase):
    """Copy what is printed to the console into a log file (rewritten atomically)."""

    def __init__(self, stream, path: Path):
        self.stream, self.path, self.lines = stream, path, []

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.lines.append(s)
        return len(s)

    def flush(self) -> None:
        self.stream.flush()

    def save(self) -> None:
        from shared.atomic import atomic_write_text

        atomic_write_text(self.path, "".join(self.lines))


def _plot_curves(runs: dict[str, Path], path: Path) -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.atomic import atomic_path

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, run_dir in runs.items():
        with open(run_dir / "metrics.csv", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        ep = [int(r["epoch"]) for r in rows]
        ax[0].plot(ep, [float(r["train_loss"]) for r in rows], "o-", ms=3, label=label)
        ax[1].plot(ep, [float(r["dice"]) for r in rows], "o-", ms=3, label=label)
    ax[0].set(xlabel="epoch", ylabel="train loss (BCE + Dice)")
    ax[1].set(xlabel="epoch", ylabel="Dice on the Mars test set", ylim=(0, 1))
    ax[1].legend(fontsize=8)
    fig.suptitle("Mars-CrackNet, quick profile, synthetic data")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _plot_examples(data: Path, stems: list[str], models: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from mars_cracknet.data.mars import find_image, load_image, load_mask
    from mars_cracknet.inference import predict_tensor
    from shared.atomic import atomic_path

    cols = 2 + len(models)
    fig, axes = plt.subplots(len(stems), cols, figsize=(2.2 * cols, 2.2 * len(stems)),
                             squeeze=False)
    for r, stem in enumerate(stems):
        img = load_image(find_image(data / "imgs", stem))
        panels = [("image", img), ("ground truth", load_mask(find_image(data / "masks", stem)))]
        x = torch.from_numpy(img.copy()).permute(2, 0, 1).float()[None] / 255.0
        for label, model in models.items():
            panels.append((label, (predict_tensor(model, x)[0, 0].numpy() > 0.5)))
        for c, (title, arr) in enumerate(panels):
            axes[r, c].imshow(arr, cmap=None if arr.ndim == 3 else "gray")
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def _write_masks(model, data: Path, stems: list[str], out: Path) -> None:
    from mars_cracknet.data.mars import find_image
    from mars_cracknet.predict import open_source, predict_image

    out.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        src = open_source(find_image(data / "imgs", stem))
        try:
            res = predict_image(model, src, out, tile=256, overlap=32)
        finally:
            src.close()
        Path(res["mask"]).replace(out / f"{stem}.png")


def _copy_masks(data: Path, stems: list[str], out: Path) -> None:
    from mars_cracknet.data.mars import find_image

    out.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copyfile(find_image(data / "masks", stem), out / f"{stem}.png")


# settings that change what a run learns: a finished run is reused only if they all match
RUN_KEYS = ("model", "width", "epochs", "batch_size", "lr", "weight_decay", "loss", "ratio",
            "crop_size", "seed", "amp")
SEMI_KEYS = ("pretrain_epochs", "pretrain_lr", "finetune_mode")


def _stale(run_dir: Path, cfg: dict[str, Any], mode: str) -> bool:
    """True when ``run_dir`` was trained with other settings than ``cfg`` (or has none)."""
    import yaml

    path = run_dir / "config.yml"
    if not path.is_file():
        return True
    saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    keys = RUN_KEYS + SEMI_KEYS if mode == "semi" else RUN_KEYS
    return saved.get("mode") != mode or any(saved.get(k) != cfg.get(k) for k in keys)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Mars-CrackNet reproduction (quick profile, synthetic data): train ResUNet "
                    "in modes a, b, c, evaluate, analyse predicted MIC vs EDC crack networks, "
                    "write results/mars_cracknet/.")
    p.add_argument("--profile", default="quick", help="quick (default) or paper or a YAML path")
    p.add_argument("--data", type=Path, default=REPO_ROOT / "datasets/mars_cracknet/synthetic")
    p.add_argument("--runs", type=Path, default=REPO_ROOT / "runs/mars_cracknet/reproduce")
    p.add_argument("--results", type=Path, default=REPO_ROOT / "results/mars_cracknet")
    p.add_argument("--model", choices=["resunet", "unet"], default="resunet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="retrain even if runs exist")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    import json

    import torch
    import yaml

    from mars_cracknet import analysis
    from mars_cracknet.config import load_config, validate
    from mars_cracknet.data.mars import read_list
    from mars_cracknet.data.synthetic import generate_dataset
    from mars_cracknet.predict import load_model
    from mars_cracknet.train import main as train_main
    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.results import write_summary

    t0 = time.perf_counter()
    torch.set_num_threads(a.threads)
    a.results.mkdir(parents=True, exist_ok=True)
    tee = Tee(sys.stdout, a.results / "reproduce.log")
    sys.stdout = tee
    try:
        cfg = validate(load_config(a.profile, {"model": a.model, "seed": a.seed,
                                               "data": str(a.data), "runs": str(a.runs)}))
        print(f"# Mars-CrackNet reproduction, profile {cfg['profile']}, model {a.model}")
        t = time.perf_counter()
        generate_dataset(a.data, seed=a.seed, **QUICK_DATA)
        counts = json.loads((a.data / "synthetic.json").read_text())["counts"]
        print(f"data: {a.data} {counts} ({time.perf_counter() - t:.1f} s)")

        run_dirs: dict[str, Path] = {}
        results: dict[str, dict[str, Any]] = {}
        for key, mode in MODES:
            run_dir = a.runs / mode
            done = run_dir / "results.json"
            if run_dir.exists() and (a.fresh or _stale(run_dir, cfg, mode)):
                print(f"[{mode}] removing {run_dir} (--fresh or trained with other settings)")
                shutil.rmtree(run_dir)
            if done.is_file() and "wall_time_s" in json.loads(done.read_text()):
                print(f"[{mode}] reusing the finished run {run_dir}")
            else:
                t = time.perf_counter()
                rc = train_main(["--profile", a.profile, "--mode", mode, "--model", a.model,
                                 "--data", str(a.data), "--runs", str(a.runs), "--name", mode,
                                 "--seed", str(a.seed), "--threads", str(a.threads)])
                if rc != 0:
                    print(f"error: training mode {mode} failed (exit {rc})", file=sys.stderr)
                    return rc
                print(f"[{mode}] trained in {time.perf_counter() - t:.1f} s")
            run_dirs[f"{key} ({mode})"] = run_dir
            results[f"{key} ({mode})"] = json.loads(done.read_text())

        # ------------------------------------------------------------ table of the modes
        lines = ["mode,epochs,best_epoch," + ",".join(f"final_{m}" for m in METRICS) + ","
                 + ",".join(f"best_{m}" for m in METRICS) + ",train_wall_s"]
        for label, res in results.items():
            f, b = res["final"], res["test"]
            lines.append(f"{label},{res['epochs']},{res['best_epoch']},"
                         + ",".join(f"{f[m]:.4f}" for m in METRICS) + ","
                         + ",".join(f"{b[m]:.4f}" for m in METRICS) + f",{res['wall_time_s']}")
        atomic_write_text(a.results / "modes.csv", "\n".join(lines) + "\n")
        print("\n".join(lines))
        _plot_curves(run_dirs, a.results / "curves.png")

        # ------------------------------------------------------------ crack-network analysis
        model_c, _ = load_model(a.runs / "semi", a.model)
        mic, edc = read_list(a.data / "lists/mars_test.txt"), read_list(a.data / "lists/earth.txt")
        work = a.runs / "analysis"
        if work.exists():
            shutil.rmtree(work)
        t = time.perf_counter()
        _write_masks(model_c, a.data, mic, work / "pred_mic")
        _write_masks(model_c, a.data, edc, work / "pred_edc")
        _copy_masks(a.data, mic, work / "gt_mic")
        _copy_masks(a.data, edc, work / "gt_edc")
        ks_pred = analysis.compare(work / "pred_edc", work / "pred_mic", work / "cmp_pred",
                                   ("EDC (predicted)", "MIC (predicted)"))
        ks_gt = analysis.compare(work / "gt_edc", work / "gt_mic", work / "cmp_gt",
                                 ("EDC (ground truth)", "MIC (ground truth)"))
        print(f"analysis of {len(mic)} MIC and {len(edc)} EDC masks "
              f"({time.perf_counter() - t:.1f} s)")
        ks_lines = ["masks,measure,n_edc,n_mic,ks_statistic,p_value"]
        for name, table in (("predicted", ks_pred), ("ground_truth", ks_gt)):
            for r in table:
                ks_lines.append(f"{name},{r['measure']},{r['n_a']},{r['n_b']},"
                                f"{r['ks_statistic']:.4f},{r['p_value']:.4g}")
        atomic_write_text(a.results / "ks.csv", "\n".join(ks_lines) + "\n")
        print("\n".join(ks_lines))
        shutil.copyfile(work / "cmp_pred" / "compare.pdf", a.results / "compare.pdf")
        shutil.copyfile(work / "cmp_gt" / "compare.pdf", a.results / "compare_ground_truth.pdf")
        summaries = {}
        for name in ("cmp_pred/a", "cmp_pred/b", "cmp_gt/a", "cmp_gt/b"):
            s = json.loads((work / name / "summary.json").read_text())
            summaries[s["label"]] = {k: s[k] for k in (*analysis.LIST_MEASURES,
                                                       *analysis.SCALAR_MEASURES)}

        models = {}
        for label, run_dir in run_dirs.items():
            models[label], _ = load_model(run_dir, a.model)
        _plot_examples(a.data, mic[:2], models, a.results / "examples.png")

        # ------------------------------------------------------------ results
        atomic_write_text(a.results / "config.yml", yaml.safe_dump(
            {**cfg, "data_params": QUICK_DATA}, sort_keys=False))
        atomic_write_json(a.results / "metrics.json", {
            "modes": {k: {"final": v["final"], "best": v["test"], "best_epoch": v["best_epoch"],
                          "epochs": v["epochs"], "parameters": v["parameters"],
                          "wall_time_s": v["wall_time_s"]} for k, v in results.items()},
            "ks": {"predicted": ks_pred, "ground_truth": ks_gt},
            "analysis": summaries})
        rep = cfg["reported"]
        rows = []
        for label, res in results.items():
            for m in METRICS:
                rows.append({"setting": f"mode {label}, Mars test set (final epoch)",
                             "metric": m.capitalize(),
                             "reported": rep["metrics"].get(label, {}).get(m),
                             "ours": round(float(res["final"][m]), 4)})
        diff = results["c (semi)"]["final"]["dice"] - results["a (mars)"]["final"]["dice"]
        rows.append({"setting": "mode c - mode a", "metric": "Dice difference",
                     "reported": rep["comparisons"]["c_minus_a_dice"],
                     "ours": round(float(diff), 4)})
        for r in ks_pred:
            if r["measure"] in ("intersection_angles", "segmentation_ratios"):
                rows.append({"setting": "EDC vs MIC, predicted masks (mode c)",
                             "metric": f"KS statistic, {r['measure'].replace('_', ' ')}",
                             "reported": rep["comparisons"][f"ks_{r['measure']}"],
                             "ours": round(float(r["ks_statistic"]), 4)})
        wall = time.perf_counter() - t0
        n_train = len(read_list(a.data / "lists/mars_train.txt"))
        write_summary(
            paper="mars_cracknet", rows=rows, results_dir=a.results,
            data=f"synthetic EDC/MIC crack scenes (seed {a.seed}; {n_train} MIC training crops, "
                 f"{len(mic)} MIC test images, {len(edc)} EDC images)",
            profile=str(cfg["profile"]), wall_time_s=wall,
            notes="Synthetic data generated by mars_cracknet/data/synthetic.py; the paper gives "
                  "no numbers, only the qualitative claims in the reported column. Metrics are "
                  "of the final epoch (the best-on-test epoch is in metrics.json).",
            extra={"model": a.model, "parameters": results["a (mars)"]["parameters"]})
        print(f"done in {wall:.1f} s -> {a.results}")
    finally:
        sys.stdout = tee.stream
        tee.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
