"""``make reproduce-dunes``: fusion (Embed + Text) against the Embed-only SegFormer, over seeds.

1. generate the five synthetic regions and cut them into tiles (per data seed; reused when
   present with the same parameters); encode the class descriptions (``make_text_embeds``);
2. for every seed, train the fusion model and the baseline with ``train.run(cfg, run_dir)``
   (one run folder per (model, seed); a finished run of the same config and code is reused via
   ``shared.runs.finished_run``, an interrupted one resumed); each seed changes initialisation,
   sampling, augmentation and dropout, the data stay fixed unless ``--data-seeds``;
3. evaluate every run on the test split (OA, mIoU ours and as the reference defines it, kappa);
4. map the held-out whole-region scene with ``inference_tile`` (first seed's fusion model);
5. ``results/dune_vlm/summary.json``: per-seed values, mean and 95 % CI per metric, and the
   paper's claim "fusion beats the baseline" as a paired comparison by seed with a verdict.

Every size comes from the profile (``--config quick`` by default).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from shared.cli import progress_enabled

MODELS = ("fusion", "baseline")
METRICS = (("OA", "test OA %", 100), ("mIoU", "test mIoU % (ours: present classes)", 100),
           ("mIoU_ref", "test mIoU % (reference: absent classes 0)", 100),
           ("kappa", "test kappa", 1))


def _log() -> logging.Logger:
    return logging.getLogger("dune_vlm.reproduce")


def _setup_logging(path: Path) -> None:
    log = _log()
    log.setLevel(logging.INFO)
    log.propagate = False
    log.handlers.clear()
    path.parent.mkdir(parents=True, exist_ok=True)
    for h in (logging.StreamHandler(sys.stdout), logging.FileHandler(path, "w", "utf-8")):
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(h)


def prepare_data(cfg: dict, data_seed: int, progress: bool) -> tuple[Path, dict]:
    """Synthetic tiles of ``data_seed`` (own folder per data seed) and the text embeddings."""
    from dune_vlm.data.synthetic import generate_dataset
    from dune_vlm.make_text_embeds import make_text_embeds
    from shared.configs import resolve_path

    syn = cfg["synthetic"]
    root = resolve_path(cfg["data"]["root"])
    if data_seed != int(syn["seed"]):
        root = root.with_name(f"{root.name}_data{data_seed}")
    info = generate_dataset(root, size=int(syn["size"]), tile=int(syn["tile"]),
                            seed=data_seed, noise=float(syn["noise"]), progress=progress)
    text_path = resolve_path(cfg["text"]["embed_path"])
    if not text_path.is_file():
        make_text_embeds(text_path)
    return root, info


def train_or_reuse(cfg: dict, run_dir: Path, progress: bool) -> str:
    """``reused``, ``resumed`` or ``trained``: the one finished-run check of shared.runs
    (``cfg`` with ``train.threads`` resolved, as the run's config.yaml keeps it)."""
    from dune_vlm.train import resolve_run_precision, resolve_run_threads, run
    from shared.configs import diff_keys
    from shared.runs import CONFIG_NAME, code_version, finished_run, read_yaml_mapping

    pkg = Path(__file__).resolve().parent
    cfg = resolve_run_precision(resolve_run_threads(cfg))  # as the run's config.yaml keeps them
    if finished_run(run_dir, cfg, code_version(pkg)):
        return "reused"
    resume = (run_dir / "last.pt").is_file() and (run_dir / CONFIG_NAME).is_file() and not [
        k for k in diff_keys(read_yaml_mapping(run_dir / CONFIG_NAME), cfg)
        if k != "train.epochs" and not k.startswith("machine")]
    run(cfg, run_dir, resume=resume, overwrite=not resume, progress=progress)
    return "resumed" if resume else "trained"


def seed_config(base: dict, model: str, seed: int, root: Path) -> dict:
    import copy

    cfg = copy.deepcopy(base)
    cfg["model"]["name"] = model
    cfg["train"]["seed"] = int(seed)
    cfg["data"]["root"] = str(root)
    return cfg


def _resolved_precision(cfg: dict) -> str:
    """The arithmetic every run of this reproduction trained in (``train.precision`` resolved on
    this machine: ``auto`` -> bf16 or fp32), for the record's precision column."""
    from dune_vlm.train import resolve_run_precision

    return str(resolve_run_precision(cfg)["train"]["precision"])


def map_figure(embed_tif: Path, label_tif: Path, pred_tif: Path, out_png: Path,
               title: str) -> None:
    """Six panels at 1,300 x 900 px: embedding false colour (first 3 principal components),
    reference, prediction, where they disagree, confidence, and the class legend, each map with
    a scale bar. The demo scene is small enough to read whole (the mapping itself streams)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.colors import ListedColormap

    from dune_vlm.utils.config import class_colors, class_names
    from shared.figures import add_scale_bar, save_figure

    with rasterio.open(embed_tif) as src:
        emb = src.read(out_dtype="float32")
        nd = src.nodata
        pixel_m = abs(src.transform.a) if src.crs is not None and src.crs.is_projected else None
    with rasterio.open(label_tif) as src:
        ref = src.read(1)
    with rasterio.open(pred_tif) as src:
        pred = src.read(1)
        conf = src.read(2) if src.count > 1 else None
    valid = ~(emb == nd).any(0) if nd is not None else np.ones(emb.shape[1:], bool)
    x = emb[:, valid].T
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x[:: max(1, len(x) // 20000)], full_matrices=False)
    pcs = x @ vt[:3].T
    lo, hi = np.percentile(pcs, 2, axis=0), np.percentile(pcs, 98, axis=0)
    rgb = np.ones((*valid.shape, 3))
    rgb[valid] = np.clip((pcs - lo) / np.maximum(hi - lo, 1e-9), 0, 1)
    colors = class_colors()
    names = class_names()
    cmap = ListedColormap([np.array(colors[i]) / 255 for i in range(len(names))])

    def masked(a):
        return np.ma.masked_where(a == 255, a)

    both = (ref != 255) & (pred != 255)
    wrong = both & (ref != pred)
    disagree = np.full((*ref.shape, 3), 1.0)  # white: nodata or unlabelled
    disagree[both] = (0.82, 0.82, 0.82)  # grey: map and reference agree
    disagree[wrong] = (0.85, 0.1, 0.1)  # red: they disagree
    fig, axes = plt.subplots(2, 3, figsize=(13, 9))
    axes = axes.ravel()
    axes[0].imshow(rgb)
    axes[0].set_title("64-band embedding (PCA false colour)", fontsize=11)
    axes[1].imshow(masked(ref), cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5,
                   interpolation="nearest")
    axes[1].set_title("reference labels", fontsize=11)
    axes[2].imshow(masked(pred), cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5,
                   interpolation="nearest")
    axes[2].set_title("inference_tile map (fusion)", fontsize=11)
    axes[3].imshow(disagree, interpolation="nearest")
    share = wrong.sum() / max(both.sum(), 1)
    axes[3].set_title(f"disagreement: red = map differs from reference\n"
                      f"({share * 100:.1f} % of labelled pixels; grey = agree)", fontsize=11)
    if conf is not None:
        im = axes[4].imshow(np.ma.masked_where(conf == 255, conf), cmap="magma", vmin=0,
                            vmax=100)
        axes[4].set_title("confidence (blended max probability, %)", fontsize=11)
        fig.colorbar(im, ax=axes[4], fraction=0.046).ax.tick_params(labelsize=9)
    for ax in axes[:5]:
        ax.set_axis_off()
        if ax.images:
            add_scale_bar(ax, pixel_m, ref.shape[1])
    axes[5].set_axis_off()
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(colors[i]) / 255)
               for i in range(len(names))]
    axes[5].legend(handles, [f"{i}  {n}" for i, n in enumerate(names)], loc="center",
                   fontsize=11, frameon=False, title="dune classes", title_fontsize=11)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_figure(fig, out_png, dpi=100)


def map_accuracy(pred_tif: Path, label_tif: Path, num_classes: int, block: int = 512) -> dict:
    """Metrics of the map against the reference raster, read block by block."""
    import rasterio
    from rasterio.windows import Window

    from dune_vlm.utils.metrics import SegMetric

    m = SegMetric(num_classes)
    with rasterio.open(pred_tif) as p, rasterio.open(label_tif) as r:
        for r0 in range(0, p.height, block):
            for c0 in range(0, p.width, block):
                w = Window(c0, r0, min(block, p.width - c0), min(block, p.height - r0))
                a, b = p.read(1, window=w), r.read(1, window=w)
                keep = (a != 255) & (b != 255)
                m.update(a[keep], b[keep])
    return m.compute()


def map_demo(cfg: dict, root: Path, info: dict, weights: Path, run_base: Path,
             results: Path, progress: bool) -> dict:
    """Map the held-out scene with inference_tile; accuracy against its reference raster."""
    from dune_vlm.checkpoint import load_model_for_inference
    from dune_vlm.inference_tile import predict_raster
    from dune_vlm.utils.config import class_colors, class_names
    from shared.atomic import atomic_write_json

    tile_cfg = cfg["tile"]
    scene = info["map_scene"]
    embed_tif, label_tif = root / scene["image"], root / scene["labels"]
    pred_tif = run_base / "map" / "namib_map_fusion.tif"
    model, text, _ = load_model_for_inference(weights, None, "cpu")
    stats = predict_raster(
        embed_tif, pred_tif, model, text, tile_size=int(tile_cfg["tile_size"]),
        stride=int(tile_cfg["stride"]),
        batch_size=int(tile_cfg["batch_size"]), confidence=True,
        colormap={k: (*c, 255) for k, c in class_colors().items()}, class_names=class_names(),
        progress=progress)
    m = map_accuracy(pred_tif, label_tif, int(cfg["data"]["num_classes"]))
    map_figure(embed_tif, label_tif, pred_tif, results / "map_namib_fusion.png",
               f"Synthetic Namib scene (held out), inference_tile.py: OA "
               f"{m['OA'] * 100:.1f} %, mIoU {m['mIoU'] * 100:.1f} %")
    out = {"scene": str(scene["image"]), "weights": str(weights),
           "stats": {k: stats[k] for k in ("width", "height", "windows_predicted", "wall_s")},
           "metrics": {k: m[k] for k in ("OA", "mIoU", "mIoU_ref", "mF1", "kappa")}}
    atomic_write_json(results / "map_metrics.json", out)
    return out


def run_seeds(cfg: dict, seeds, data_seeds, run_base: Path, results: Path, args):
    """Train (or reuse) and test both models for every seed; per-seed test metrics."""
    from dune_vlm.inference import run_evaluation

    log, progress = _log(), progress_enabled(args.no_progress)
    values = {m: {k: [] for k, _, _ in METRICS} for m in MODELS}
    per_seed, times, first = [], {m: [] for m in MODELS}, None
    for seed, dseed in zip(seeds, data_seeds):
        root, info = prepare_data(cfg, dseed, progress)
        for model in MODELS:
            run_dir = run_base / f"seed{seed}_data{dseed}" / model
            if args.fresh and run_dir.exists():
                shutil.rmtree(run_dir)
            scfg = seed_config(cfg, model, seed, root)
            t0 = time.time()
            how = train_or_reuse(scfg, run_dir, progress)
            res = run_evaluation(root, run_dir / "best.pt", "test", out=run_dir,
                                 progress=progress)
            times[model].append(round(time.time() - t0, 1))
            o = res["overall"]
            for key, _, scale in METRICS:
                values[model][key].append(o[key] * scale)
            per_seed.append({"seed": seed, "data_seed": dseed, "model": model, "run": how,
                             **{k: o[k] for k, _, _ in METRICS},
                             "per_region": res["per_region"], "wall_s": times[model][-1]})
            log.info(f"seed {seed} data {dseed} {model} ({how}, {times[model][-1]:.0f} s): "
                     f"test OA {o['OA'] * 100:.2f} %  mIoU {o['mIoU'] * 100:.2f} % "
                     f"(ref {o['mIoU_ref'] * 100:.2f} %)  kappa {o['kappa']:.4f}")
            if first is None and model == "fusion":
                first = (root, info, run_dir / "best.pt")
        for model in MODELS:
            shutil.copyfile(run_base / f"seed{seed}_data{dseed}" / model / "history.csv",
                            results / f"{model}_seed{seed}_history.csv")
        if seed == seeds[0]:  # the first seed's figures beside the record, not only in runs/
            for model in MODELS:
                shutil.copyfile(run_base / f"seed{seed}_data{dseed}" / model /
                                "confusion_test.png", results / f"{model}_confusion_test.png")
            learning_curves({m: run_base / f"seed{seed}_data{dseed}" / m / "history.csv"
                             for m in MODELS}, results / "learning_curves.png", seed)
    return values, per_seed, times, first


def learning_curves(histories: dict[str, Path], out_png: Path, seed: int) -> None:
    """Training loss and validation mIoU per epoch of both models of one seed (history.csv),
    drawn by ``shared.figures.plot_curves``."""
    import csv

    from shared.figures import plot_curves

    loss, miou = [], []
    for model, path in histories.items():
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        epochs = [int(r["epoch"]) for r in rows]
        loss.append({"x": epochs, "y": [float(r["train_loss"]) for r in rows], "label": model})
        miou.append({"x": epochs, "y": [100 * float(r["val_mIoU_ref"]) for r in rows],
                     "label": model})
    plot_curves(out_png, [{"lines": loss, "ylabel": "training loss (cross-entropy)"},
                          {"lines": miou, "ylabel": "validation mIoU % (reference definition)"}],
                title=f"dune_vlm learning curves, seed {seed} (quick profile, synthetic data)",
                legend_size=10)


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import add_progress_argument, finish_parser
    from shared.results import add_results_arguments
    from shared.runs import positive_int

    p = argparse.ArgumentParser(
        prog="dunes-reproduce",
        description="Reproduce the dune_vlm comparison on synthetic regions over several seeds: "
                    "fusion (Embed + Text) vs the Embed-only SegFormer, paired by seed, "
                    "results/local/dune_vlm/summary.json (--record: results/dune_vlm/).")
    p.add_argument("--config", "--profile", dest="config", default="quick",
                   help="'quick', 'paper' or a YAML file")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds")
    p.add_argument("--data-seeds", action="store_true",
                   help="vary the synthetic data seed with the training seed too")
    add_results_arguments(p, "dune_vlm")
    p.add_argument("--runs", default=None, help="runs folder (default runs/dune_vlm/<profile>)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads, kept in each run's config (default: the config's "
                        "train.threads, else $OMP_NUM_THREADS or 2)")
    p.add_argument("--fresh", action="store_true", help="retrain even if finished runs exist")
    p.add_argument("--no-map", action="store_true", help="skip the mapping demo")
    add_progress_argument(p)
    return finish_parser(p)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    t_start = time.time()
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from dune_vlm.utils.config import load_run_config
    from shared.configs import REPO_ROOT
    from shared.errors import UserError
    from shared.results import write_summary
    from shared.stats import claim, describe

    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    from dune_vlm.train import resolve_run_threads

    cfg = resolve_run_threads(load_run_config(args.config), args.threads)
    torch.set_num_threads(int(cfg["train"]["threads"]))
    profile = cfg["profile"]
    from shared.results import resolve_results

    results = resolve_results(args, "dune_vlm")
    run_base = Path(args.runs) if args.runs else REPO_ROOT / "runs" / "dune_vlm" / profile
    _setup_logging(results / "reproduce.log")
    log, progress = _log(), progress_enabled(args.no_progress)
    seeds = [int(cfg["train"]["seed"]) + i for i in range(args.seeds)]
    data_seeds = [int(cfg["synthetic"]["seed"]) + (i if args.data_seeds else 0)
                  for i in range(args.seeds)]
    values, per_seed, times, first = run_seeds(cfg, seeds, data_seeds, run_base, results,
                                               args)
    map_info = None if args.no_map else map_demo(cfg, *first, run_base, results, progress)
    shutil.copyfile(run_base / f"seed{seeds[0]}_data{data_seeds[0]}" / "fusion" / "config.yaml",
                    results / "fusion_config.yaml")
    shutil.copyfile(run_base / f"seed{seeds[0]}_data{data_seeds[0]}" / "baseline" /
                    "config.yaml", results / "baseline_config.yaml")
    rep = cfg["reported"]
    reported = {"OA": rep["OA"], "mIoU_ref": rep["mIoU"], "kappa": rep["kappa"]}
    names = {"fusion": "fusion (SegFormer + Embed + Text)",
             "baseline": "baseline (Embed-only SegFormer)"}
    rows = [{"setting": names[model],
             "metric": label, "reported": reported.get(key) if model == "fusion" else None,
             "ours": describe(values[model][key])}
            for model in MODELS for key, label, _ in METRICS]
    claims = [claim("fusion (Embed+Text) beats the embed-only SegFormer baseline", label,
                    "fusion", values["fusion"][key], "baseline", values["baseline"][key],
                    "greater") for key, label, _ in METRICS[:3]]
    wall = time.time() - t_start
    syn = cfg["synthetic"]
    write_summary(
        paper="dune_vlm", rows=rows, profile=profile, wall_time_s=wall, results_dir=results,
        data=f"synthetic 64-band embedding scenes of 5 regions ({syn['size']} px, "
             f"{syn['tile']} px tiles, data seed(s) {sorted(set(data_seeds))})",
        notes="Synthetic stand-in for Google Satellite Embedding V1 (the real GEE exports and "
              "labels are not public here): compare fusion with baseline, not with the paper's "
              "real-data figures. The paper's mIoU is the reference definition (absent classes "
              "count 0). Text: all-MiniLM-L6-v2 (384-d) encodings of our class descriptions. "
              "Quick fusion model: MiT-B0-sized encoder (4.14 M parameters) with the paper's "
              "text alignment and head. Wall time measured on a shared 2-core CPU.",
        claims=claims,
        extra={"precision": _resolved_precision(cfg), "seeds": seeds,
               "data_seeds": data_seeds, "per_seed": per_seed,
               "train_eval_wall_s": times, "map": map_info})
    from shared.results import format_claim, relativize_paths

    for c in claims:
        log.info(f"claim {c['metric']}: mean difference {format_claim(c)}, {c['verdict']}")
    log.info(f"wrote {results}/summary.json; total {wall / 60:.1f} min")
    relativize_paths(results)  # a record names no machine's absolute path
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
