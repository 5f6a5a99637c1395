"""`make reproduce-cracks`: the paper's comparison over several seeds, quick profile.

1. Generate the synthetic EDC/MIC dataset (sizes from the profile's ``reproduce.synthetic``;
   ``datasets/mars_cracknet/synthetic_d<data seed>``, reused if present).
2. For every seed: train Mars-CrackNet (ResUNet) in modes a (``mars``), b (``earth_mars``) and
   c (``semi``) with ``mars_cracknet.train.run`` (one run folder per mode and seed; a finished
   run of the same config and code is reused). Each seed changes initialisation, sampling and
   augmentation; the data (and its validation split) stay fixed unless ``--data-seeds`` > 1.
3. Test Dice (and precision, recall, Jaccard) of the epoch selected on validation, per seed;
   the claims "c > a" and "b vs a" as paired comparisons over seeds (``shared.stats``).
4. For the first seed: predicted MIC (Mars test) and EDC (Earth) masks of the mode-c model,
   the crack-network analysis of both and of the ground truth (two-sample KS per measure).
5. ``results/mars_cracknet/``: summary.json (per-seed values, claims), runs.csv, ks.csv,
   compare*.pdf, curves_<mode>.png, examples.png, config.yaml, reproduce.log.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.configs import REPO_ROOT

SETTINGS = (("a", "mars"), ("b", "earth_mars"), ("c", "semi"))
METRICS = ("precision", "recall", "dice", "jaccard")


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import finish_parser
    from shared.results import add_results_arguments
    from shared.runs import positive_int

    p = argparse.ArgumentParser(
        prog="cracknet-reproduce",
        description="Mars-CrackNet reproduction over seeds (quick profile, synthetic data): "
                    "modes a, b, c, paired claims, crack-network analysis -> "
                    "results/local/mars_cracknet/ (--record: results/mars_cracknet/).")
    p.add_argument("--config", "--profile", dest="config", default="quick",
                   help="profile or YAML (default: quick; every size comes from it)")
    p.add_argument("--seeds", type=int, default=None,
                   help="training seeds 0..N-1 (default: the profile's reproduce.seeds)")
    p.add_argument("--data-seeds", type=int, default=1,
                   help="also vary the synthetic data: data seeds data_seed..+N-1 (default 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (e.g. --set epochs=2)")
    p.add_argument("--datasets", type=Path, default=REPO_ROOT / "datasets/mars_cracknet",
                   help="synthetic data folder (default: datasets/mars_cracknet)")
    p.add_argument("--runs", type=Path, default=REPO_ROOT / "runs/mars_cracknet/reproduce",
                   help="run folders (default: runs/mars_cracknet/reproduce)")
    add_results_arguments(p, "mars_cracknet")
    p.add_argument("--no-analysis", action="store_true", help="skip the crack analysis")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    return finish_parser(p, set_example="epochs=2")


# --------------------------------------------------------------------------- training
def train_setting(cfg: dict[str, Any], run_dir: Path, version: str) -> tuple[dict, bool]:
    """(summary, reused) of one (setting, seed) run."""
    import json

    from mars_cracknet.config import validate
    from mars_cracknet.train import resolve_run_precision, run
    from shared.runs import finished_run

    cfg = resolve_run_precision(validate(cfg))  # precision and machine as config.yaml keeps them
    if finished_run(run_dir, cfg, version):
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8")), True
    return run(cfg, run_dir, overwrite=True), False


def train_seed(cfg: dict[str, Any], a: argparse.Namespace, seed: int, data_seeds: list[int],
               version: str) -> dict[tuple[int, int, str], dict]:
    """Every setting of one training seed (on each data seed)."""
    from mars_cracknet.data.synthetic import generate_dataset

    out = {}
    for ds in data_seeds:
        data = a.datasets / f"synthetic_d{ds}"
        generate_dataset(data, seed=ds, **cfg["reproduce"]["synthetic"])
        for key, mode in SETTINGS:
            run_cfg = {**copy.deepcopy(cfg), "mode": mode, "seed": seed, "data": str(data)}
            run_dir = a.runs / f"d{ds}" / mode / f"seed{seed}"
            t = time.perf_counter()
            summary, reused = train_setting(run_cfg, run_dir, version)
            t_sel = summary["test_selected"]
            print(f"[data {ds} seed {seed} {key} ({mode})] "
                  f"{'reused' if reused else f'trained in {time.perf_counter() - t:.1f} s'}"
                  f": selected epoch {summary['selected_epoch']}, test Dice "
                  f"{t_sel['dice']:.4f} (last epoch {summary['test_last']['dice']:.4f})",
                  flush=True)
            out[(ds, seed, key)] = {**summary, "run_dir": str(run_dir), "reused": reused}
    return out


# --------------------------------------------------------------------------- analysis
def _write_masks(model, data: Path, stems: list[str], out: Path, tile: int) -> None:
    from mars_cracknet.data.mars import find_image
    from mars_cracknet.predict import open_source, predict_image

    out.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        src = open_source(find_image(data / "imgs", stem))
        try:
            res = predict_image(model, src, out, tile=tile, overlap=32)
        finally:
            src.close()
        Path(res["mask"]).replace(out / f"{stem}.png")


def _copy_masks(data: Path, stems: list[str], out: Path) -> None:
    from mars_cracknet.data.mars import find_image

    out.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copyfile(find_image(data / "masks", stem), out / f"{stem}.png")


def crack_analysis(run_c: Path, data: Path, work: Path, results: Path, tile: int) -> dict:
    """Predicted and ground-truth EDC vs MIC crack networks (KS per measure)."""
    from mars_cracknet import analysis
    from mars_cracknet.checkpoint import load_model
    from mars_cracknet.data.mars import read_list
    from shared.atomic import atomic_write_text

    model, _ = load_model(run_c)
    mic, edc = read_list(data / "lists/mars_test.txt"), read_list(data / "lists/earth.txt")
    if work.exists():
        shutil.rmtree(work)
    _write_masks(model, data, mic, work / "pred_mic", tile)
    _write_masks(model, data, edc, work / "pred_edc", tile)
    _copy_masks(data, mic, work / "gt_mic")
    _copy_masks(data, edc, work / "gt_edc")
    ks = {"predicted": analysis.compare(work / "pred_edc", work / "pred_mic", work / "cmp_pred",
                                        ("EDC (predicted)", "MIC (predicted)")),
          "ground_truth": analysis.compare(work / "gt_edc", work / "gt_mic", work / "cmp_gt",
                                           ("EDC (ground truth)", "MIC (ground truth)"))}
    lines = ["masks,measure,n_edc,n_mic,ks_statistic,p_value"]
    for name, table in ks.items():
        lines += [f"{name},{r['measure']},{r['n_a']},{r['n_b']},{r['ks_statistic']:.4f},"
                  f"{r['p_value']:.4g}" for r in table]
    atomic_write_text(results / "ks.csv", "\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.copyfile(work / "cmp_pred" / "compare.pdf", results / "compare.pdf")
    shutil.copyfile(work / "cmp_gt" / "compare.pdf", results / "compare_ground_truth.pdf")
    return ks


def plot_examples(data: Path, stems: list[str], runs: dict[str, Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from matplotlib.patches import Patch

    from mars_cracknet.checkpoint import load_model
    from mars_cracknet.data.mars import find_image, load_image, load_mask
    from mars_cracknet.inference import predict_tensor
    from shared.figures import save_figure

    def overlay(img, pred, gt):
        """The image in grey with the prediction drawn on it against the ground truth:
        green = crack found, red = false crack, blue = crack missed."""
        grey = img.mean(axis=2, keepdims=True).repeat(3, axis=2) / 255.0 * 0.8
        out = grey.copy()
        for mask, colour in ((pred & gt, (0.1, 0.85, 0.1)), (pred & ~gt, (0.95, 0.1, 0.1)),
                             (~pred & gt, (0.2, 0.45, 1.0))):
            out[mask] = colour
        return out

    models = {label: load_model(run_dir)[0] for label, run_dir in runs.items()}
    cols = 2 + len(models)
    fig, axes = plt.subplots(len(stems), cols, figsize=(2.6 * cols, 2.6 * len(stems) + 0.6),
                             squeeze=False)
    for r, stem in enumerate(stems):
        img = load_image(find_image(data / "imgs", stem))
        gt = load_mask(find_image(data / "masks", stem)) > 0
        panels = [("image", img / 255.0), ("ground truth on image", overlay(img, gt, gt))]
        x = torch.from_numpy(img.copy()).permute(2, 0, 1).float()[None] / 255.0
        panels += [(label, overlay(img, predict_tensor(m, x)[0, 0].numpy() > 0.5, gt))
                   for label, m in models.items()]
        for c, (title, arr) in enumerate(panels):
            axes[r, c].imshow(np.clip(arr, 0, 1))
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title, fontsize=10)
    fig.legend(handles=[Patch(color=(0.1, 0.85, 0.1), label="crack found (or ground truth)"),
                        Patch(color=(0.95, 0.1, 0.1), label="false crack"),
                        Patch(color=(0.2, 0.45, 1.0), label="crack missed")],
               loc="lower center", ncol=3, fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0.5 / (2.6 * len(stems) + 0.6), 1, 1))
    save_figure(fig, path, dpi=100)


# --------------------------------------------------------------------------- summary
def summarise(cfg, runs: dict, seeds, data_seeds, ks, wall: float, results: Path) -> Path:
    from mars_cracknet.data.mars import read_list
    from shared.atomic import atomic_write_text
    from shared.results import write_summary
    from shared.stats import claim, describe

    pairs = [(ds, s) for ds in data_seeds for s in seeds]
    labels = {key: f"mode {key} ({mode})" for key, mode in SETTINGS}

    def values(key: str, which: str = "test_selected", metric: str = "dice") -> list[float]:
        return [float(runs[(ds, s, key)][which][metric]) for ds, s in pairs]

    rep = cfg["reported"]
    rows = []
    for key, mode in SETTINGS:
        for m in METRICS:
            rows.append({"setting": f"{labels[key]}, Mars test set (epoch selected on "
                                    "validation)", "metric": m.capitalize(),
                         "reported": rep["metrics"].get(f"{key} ({mode})", {}).get(m),
                         "ours": describe(values(key, metric=m))})
        rows.append({"setting": f"{labels[key]}, Mars test set (last epoch)", "metric": "Dice",
                     "reported": None, "ours": describe(values(key, "test_last"))})
    claims = [claim("mode c > mode a (unlabelled images improve MIC recognition)",
                    "test Dice, selected epoch", labels["c"], values("c"), labels["a"],
                    values("a"), "greater"),
              claim("mode b vs mode a (joint MIC + EDC supervision)",
                    "test Dice, selected epoch", labels["b"], values("b"), labels["a"],
                    values("a"), "greater")]
    lines = ["data_seed,seed,setting,selected_epoch,"
             + ",".join(f"test_{m}" for m in METRICS) + ",test_last_dice,val_dice,wall_s"]
    for (ds, s, key), r in sorted(runs.items()):
        lines.append(f"{ds},{s},{labels[key]},{r['selected_epoch']},"
                     + ",".join(f"{r['test_selected'][m]:.4f}" for m in METRICS)
                     + f",{r['test_last']['dice']:.4f},{r['val_selected']['dice']:.4f},"
                     f"{r['wall_time_s']}")
    atomic_write_text(results / "runs.csv", "\n".join(lines) + "\n")
    data = Path(runs[(data_seeds[0], seeds[0], "a")]["run_dir"])  # for the counts only
    root = Path(cfg_data_root(runs, data_seeds[0], seeds[0]))
    n = {k: len(read_list(root / "lists" / f"{k}.txt")) for k in ("mars_train", "mars_test",
                                                                  "earth")}
    extra = {"seeds": list(seeds), "data_seeds": list(data_seeds), "model": cfg["model"],
             "parameters": runs[(data_seeds[0], seeds[0], "a")]["parameters"],
             "runs": {f"d{ds}/seed{s}/{k}": {x: r[x] for x in ("selected_epoch", "test_selected",
                                                             "test_last", "val_selected",
                                                             "wall_time_s", "reused")}
                      for (ds, s, k), r in runs.items()},
             "ks": ks, "run_folders": str(data.parents[2])}
    return write_summary(
        paper="mars_cracknet", rows=rows, results_dir=results, claims=claims, extra=extra,
        precision="/".join(sorted({str(r.get("precision", "fp32")) for r in runs.values()})),
        data=f"synthetic EDC/MIC crack scenes (data seed(s) {list(data_seeds)}; "
             f"{n['mars_train']} MIC training crops of which a seeded "
             f"{cfg['val_fraction']:.0%} share is the validation split, {n['mars_test']} MIC "
             f"test images, {n['earth']} labelled EDC images)",
        profile=str(cfg["profile"]), wall_time_s=wall,
        notes="Synthetic data from mars_cracknet/data/synthetic.py; the paper gives no numbers. "
              "Test scores of the epoch selected on the validation split; the test set is "
              "evaluated once per run. Claims are paired by (data seed, seed).")


def cfg_data_root(runs: dict, ds: int, seed: int) -> str:
    import yaml

    run_dir = Path(runs[(ds, seed, "a")]["run_dir"])
    return yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))["data"]


# --------------------------------------------------------------------------- main
def first_seed_outputs(cfg, a, runs, seed: int, ds: int) -> dict:
    """Curves, crack analysis and example predictions of the first seed's runs."""
    import yaml

    from mars_cracknet.data.mars import read_list
    from shared.atomic import atomic_write_text

    first = {k: Path(runs[(ds, seed, k)]["run_dir"]) for k, _ in SETTINGS}
    for key, run_dir in first.items():
        shutil.copyfile(run_dir / "curves.png", a.results / f"curves_{key}.png")
    data = Path(cfg_data_root(runs, ds, seed))
    ks = {}
    if not a.no_analysis:
        t = time.perf_counter()
        ks = crack_analysis(first["c"], data, a.runs / "analysis", a.results,
                            int(cfg["reproduce"]["analysis_tile"]))
        print(f"crack analysis ({time.perf_counter() - t:.1f} s)")
    plot_examples(data, read_list(data / "lists/mars_test.txt")[:2],
                  {f"mode {k}": p for k, p in first.items()}, a.results / "examples.png")
    atomic_write_text(a.results / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    return ks


def _main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    import torch

    from mars_cracknet.config import PROFILES, validate
    from shared.configs import load_config
    from shared.errors import UserError

    t0 = time.perf_counter()
    torch.set_num_threads(a.threads)
    cfg = validate(load_config(a.config, PROFILES, a.overrides))
    seeds = list(range(a.seeds if a.seeds is not None else int(cfg["reproduce"]["seeds"])))
    d0 = int(cfg["reproduce"]["data_seed"])
    data_seeds = list(range(d0, d0 + a.data_seeds))
    if not seeds or not data_seeds:
        raise UserError("--seeds and --data-seeds must be at least 1")
    from shared.results import ReproduceLog, resolve_results

    a.results = resolve_results(a, "mars_cracknet")
    a.results.mkdir(parents=True, exist_ok=True)
    tee = ReproduceLog(a.results / "reproduce.log", sys.stdout)
    sys.stdout = tee
    try:
        print(f"# Mars-CrackNet reproduction, profile {cfg['profile']}, model {cfg['model']}, "
              f"seeds {seeds}, data seeds {data_seeds}")
        from shared.runs import code_version

        version = code_version(Path(__file__).parent)
        runs = train_seed(cfg, a, seeds[0], data_seeds, version)
        ks = first_seed_outputs(cfg, a, runs, seeds[0], data_seeds[0])
        done = [seeds[0]]
        for seed in seeds:  # the summary is rewritten after every seed: a cut-off loses little
            if seed not in done:
                runs.update(train_seed(cfg, a, seed, data_seeds, version))
                done.append(seed)
            wall = time.perf_counter() - t0
            path = summarise(cfg, runs, done, data_seeds, ks, wall, a.results)
            tee.save()
        import json

        from shared.results import format_claim

        for c in json.loads(path.read_text())["claims"]:
            print(f"claim {c['claim']}: mean difference {format_claim(c)}, n={c['n']} -> "
                  f"{c['verdict']}")
        print(f"done in {wall:.1f} s -> {a.results}")
    finally:
        sys.stdout = tee.stream
        tee.save()
    from shared.results import relativize_paths

    relativize_paths(a.results)  # a record names no machine's absolute path
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import help_first

    if (rc := help_first(_main, argv)) is not None:
        return rc
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
