"""Predict crater masks and boxes with a trained model; score them when labels exist.

    python -m crater_resunet.predict --model runs/crater_resunet/quick/best.keras \
        --out runs/crater_resunet/predict  datasets/crater_resunet/pycda/valid_strip/images

For every image (any size; a small one is resized to the model input as in the paper, a large
one is cut into overlapping tiles at its own resolution and the probabilities are averaged)
it writes ``masks/<stem>_prob.png`` and ``masks/<stem>_mask.png`` (the cleaned crater mask),
craters from :func:`crater_resunet.craters.extract_craters` (smoothing and closing before the
threshold, one crater per blob, equivalent-circle diameter, crater NMS; ``--scales`` adds an
image pyramid) as YOLO detections ``labels/<stem>.txt`` (``class xc yc w h confidence``; the
box is the crater circle's bounding square, confidence = mean probability inside the blob),
one row per crater in ``craters.csv`` (centre, diameter, confidence, peak, scale, nodata),
the paper's figure ``figures/<stem>.png`` (image, ground truth when labelled, predicted mask,
image with boxes) and ``figures/<stem>_overlay.png`` (predicted and true circles at native
resolution). When a YOLO label file is found (``--labels`` folder, else a
``labels/`` folder beside ``images/``) it also reports pixel scores and crater-level
precision, recall and F1 by IoU matching of boxes (``metrics.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from crater_resunet.data import IMAGE_EXTS
from shared.runs import UserError


# ------------------------------------------------------------------------ probability maps
def resolve_overlap(overlap: int | None, th: int, tw: int) -> int:
    """The tile overlap in pixels: a quarter of the model tile by default; checked."""
    if overlap is None:
        overlap = min(th, tw) // 4
    if not 0 <= overlap < min(th, tw):
        raise UserError(f"overlap must be in [0, {min(th, tw)}) for this {th}x{tw} model, "
                        f"got {overlap}")
    return overlap


def predict_probability(model, image: np.ndarray, mode: str = "auto", overlap: int | None = None,
                        batch_size: int = 8, tile_above: float = 2.0) -> np.ndarray:
    """(H, W) float32 crater probability of a float (H, W, 3) image in [0, 1].

    ``mode``: ``resize`` (the paper: resize to the model input and back), ``tile`` (overlapping
    tiles at the image's resolution, averaged), ``auto`` (tile when a side exceeds
    ``tile_above`` times the model input, else resize). ``overlap`` defaults to a quarter tile.
    """
    import cv2

    th, tw = (int(v) for v in model.input_shape[1:3])
    h, w = image.shape[:2]
    if mode == "auto":
        mode = "tile" if (h > tile_above * th or w > tile_above * tw) else "resize"
    if mode == "resize":
        x = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
        p = np.asarray(model.predict(x[None], verbose=0))[0, ..., 0]
        return cv2.resize(p.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if mode != "tile":
        raise ValueError(f"mode must be auto, resize or tile, got {mode!r}")
    from shared.tiles import iter_windows

    overlap = resolve_overlap(overlap, th, tw)
    ph, pw = max(h, th), max(w, tw)
    padded = np.zeros((ph, pw, 3), dtype=np.float32)
    padded[:h, :w] = image
    windows = list(iter_windows(ph, pw, (th, tw), stride=(th - overlap, tw - overlap),
                                edge="shift"))
    acc = np.zeros((ph, pw), dtype=np.float32)
    cnt = np.zeros((ph, pw), dtype=np.float32)
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        x = np.stack([padded[wi.row:wi.row + th, wi.col:wi.col + tw] for wi in chunk])
        p = np.asarray(model.predict(x, verbose=0))[..., 0]
        for wi, pi in zip(chunk, p):
            acc[wi.row:wi.row + th, wi.col:wi.col + tw] += pi
            cnt[wi.row:wi.row + th, wi.col:wi.col + tw] += 1.0
    return (acc / np.maximum(cnt, 1.0))[:h, :w]


# ------------------------------------------------------------------------------ boxes
def yolo_detections(boxes: np.ndarray, confs: np.ndarray, width: int, height: int) -> str:
    lines = []
    for (x1, y1, x2, y2), c in zip(boxes, confs):
        lines.append(f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f} {c:.4f}\n")
    return "".join(lines)


def truth_boxes(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float pixel boxes ``x1 y1 x2 y2`` of YOLO labels."""
    if len(labels) == 0:
        return np.zeros((0, 4))
    xc, yc = labels[:, 1] * width, labels[:, 2] * height
    bw, bh = labels[:, 3] * width, labels[:, 4] * height
    return np.stack([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], axis=1)


# ------------------------------------------------------------------------------ figures
def to_display(image: np.ndarray, channel_order: str) -> np.ndarray:
    rgb = image[..., ::-1] if channel_order == "bgr" else image
    return np.clip(rgb, 0, 1)


def draw_boxes(image_rgb: np.ndarray, boxes: np.ndarray, color=(1.0, 0.1, 0.1)) -> np.ndarray:
    import cv2

    out = np.ascontiguousarray((image_rgb * 255).astype(np.uint8))
    c = tuple(int(v * 255) for v in color)
    thick = max(1, round(max(out.shape[:2]) / 400))
    for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4):
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), c, thick)
    return out


def figure_rows(rows: list[dict], path: str | os.PathLike, title: str | None = None) -> Path:
    """The paper's figure: per row image, ground truth, predicted mask, image with boxes.

    Each row is a dict with ``image`` (RGB float), ``truth`` (mask or None), ``pred`` (binary
    mask), ``boxes`` and optional ``name``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.atomic import atomic_path

    h, w = rows[0]["image"].shape[:2]
    aspect = w / h
    with_truth = any(row.get("truth") is not None for row in rows)
    ncol = 4 if with_truth else 3  # no empty ground-truth panel when nothing is labelled
    fig, axes = plt.subplots(len(rows), ncol,
                             figsize=(ncol * 2.6 * min(aspect, 3), 2.8 * len(rows)),
                             squeeze=False)
    heads = ["image", "ground truth", "predicted mask", "predicted craters (boxes)"]
    if not with_truth:
        heads.pop(1)
    for r, row in enumerate(rows):
        truth = row.get("truth")
        panels = [row["image"], truth if truth is not None else np.zeros(row["pred"].shape),
                  row["pred"], draw_boxes(row["image"], row["boxes"])]
        if not with_truth:
            panels.pop(1)
        for c, (ax, panel) in enumerate(zip(axes[r], panels)):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None,
                      vmin=0 if panel.ndim == 2 else None, vmax=1 if panel.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if with_truth and c == 1 and truth is None:
                ax.set_title("no ground truth", fontsize=9)
            elif r == 0:
                ax.set_title(heads[c], fontsize=9)
        if row.get("name"):
            axes[r][0].set_ylabel(row["name"], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------ the run
def find_label(image: Path, labels_dir: Path | None) -> Path | None:
    if labels_dir is not None:
        p = labels_dir / f"{image.stem}.txt"
        return p if p.is_file() else None
    if image.parent.name == "images":
        p = image.parent.parent / "labels" / f"{image.stem}.txt"
        if p.is_file():
            return p
    return None


def is_raster(path: Path) -> bool:
    """Georeferenced/any-bit-depth rasters go through ``raster_predict`` (shared.rasters)."""
    from crater_resunet.raster_predict import RASTER_EXTS

    return path.suffix.lower() in RASTER_EXTS


def collect_images(inputs: list[Path]) -> list[Path]:
    from crater_resunet.raster_predict import RASTER_EXTS

    exts = IMAGE_EXTS + RASTER_EXTS
    out = []
    for p in inputs:
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in exts
                           and q.suffix.lower() != ".lbl")
            if not found:
                raise UserError(f"{p}: no images ({', '.join(exts)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such image or folder")
    return out


class _Totals:
    """Pixel confusion, soft sums and crater counts summed over the labelled images."""

    def __init__(self):
        self.conf = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
        self.crater = {"tp": 0, "fp": 0, "fn": 0}
        self.soft = {"inter": 0.0, "t": 0.0, "p": 0.0}

    def add(self, truth: np.ndarray, prob: np.ndarray, threshold: float, cc: dict) -> None:
        t, p = truth >= 0.5, prob >= threshold
        for k, v in (("tp", t & p), ("fp", ~t & p), ("fn", t & ~p), ("tn", ~t & ~p)):
            self.conf[k] += int(v.sum())
        self.soft["inter"] += float((truth * prob).sum())
        self.soft["t"] += float(truth.sum())
        self.soft["p"] += float(prob.sum())
        for k in self.crater:
            self.crater[k] += cc[k]

    def scores(self) -> tuple[dict, dict]:
        from crater_resunet.metrics import EPS, SMOOTH, crater_scores, scores_from_confusion

        s = self.soft
        pix = scores_from_confusion(self.conf)
        prec, rec = s["inter"] / (s["p"] + EPS), s["inter"] / (s["t"] + EPS)
        pix.update({"dice_soft": (2 * s["inter"] + SMOOTH) / (s["t"] + s["p"] + SMOOTH),
                    "precision_soft": prec, "recall_soft": rec,
                    "f1_soft": 2 * prec * rec / (prec + rec + EPS)})
        return pix, crater_scores(self.crater)


def image_craters(model, image: np.ndarray, opts: dict):
    """Crater table, probability map and cleaned binary mask (uint8 0/1) of one plain image.

    One scale (``opts["scales"]`` None): the probability of :func:`predict_probability`
    (``mode``: resize or tiles); else the image pyramid of :mod:`crater_resunet.pyramid`
    (tiles at every scale, merged by the crater NMS). Craters come from
    :func:`crater_resunet.craters.extract_craters` (smoothing, closing, one crater per blob)."""
    from crater_resunet.craters import crater_mask, extract_craters
    from crater_resunet.pyramid import as_predictor, pyramid_craters

    kw = dict(threshold=opts["threshold"], sigma=opts.get("sigma", 1.0),
              closing=opts.get("closing", 1))
    if opts.get("scales") is None:
        prob = predict_probability(model, image, opts["mode"], opts["overlap"],
                                   opts["batch_size"])
        table, mask = extract_craters(prob, min_area=opts["min_area"], return_mask=True, **kw)
    else:
        fn, tile = as_predictor(model)
        table, prob = pyramid_craters(image, fn, tile, opts["scales"], overlap=opts["overlap"],
                                      batch_size=opts["batch_size"],
                                      min_area=opts["min_area"], return_prob=True, **kw)
        mask = crater_mask(prob, None, **kw)
    return table, prob, mask.astype(np.uint8)


def predict_image(model, path: Path, out: Path, totals: _Totals, opts: dict,
                  labels_dir: Path | None, figure: bool) -> tuple[list[dict], dict]:
    """One plain image (PNG/JPEG/BMP): masks, YOLO detections, scores when labelled."""
    import cv2

    from crater_resunet.craters import crater_boxes, to_rows
    from crater_resunet.data import labels_to_mask, read_image_bgr, read_yolo_labels
    from crater_resunet.metrics import crater_counts, pixel_scores
    from shared.atomic import atomic_write_bytes, atomic_write_text

    image = read_image_bgr(path, channel_order=opts["channel_order"])
    h, w = image.shape[:2]
    table, prob, pred = image_craters(model, image, opts)
    boxes, confs = crater_boxes(table), table["confidence"]
    for name, arr in (("prob", (prob * 255).round().astype(np.uint8)), ("mask", pred * 255)):
        ok, buf = cv2.imencode(".png", arr)
        atomic_write_bytes(out / "masks" / f"{path.stem}_{name}.png", buf.tobytes())
    atomic_write_text(out / "labels" / f"{path.stem}.txt", yolo_detections(boxes, confs, w, h))
    rows = to_rows(table, path.name)
    record = {"image": path.name, "craters_predicted": len(boxes)}
    label_path = find_label(path, labels_dir)
    truth = None
    if label_path is not None:
        labels = read_yolo_labels(label_path)
        truth = labels_to_mask(labels, h, w, opts["mask_shape"])
        gt_boxes = truth_boxes(labels, w, h)
        cc = crater_counts(boxes, gt_boxes, opts["iou_threshold"], confs)
        totals.add(truth, prob, opts["threshold"], cc)
        record.update({"craters_true": len(gt_boxes), **cc,
                       **pixel_scores(truth, prob, opts["threshold"])})
    if figure:
        from crater_resunet.figures import circles, write_overlay

        shown = to_display(image, opts["channel_order"])
        figure_rows([{"image": shown, "truth": truth,
                      "pred": pred, "boxes": boxes, "name": path.name}],
                    out / "figures" / f"{path.stem}.png")
        true_circles = None
        if label_path is not None:
            true_circles = np.stack([labels[:, 1] * w, labels[:, 2] * h,
                                     (labels[:, 3] * w + labels[:, 4] * h) / 2], axis=1) \
                if len(labels) else np.zeros((0, 3))
        write_overlay(shown, circles(rows), out / "figures" / f"{path.stem}_overlay.png",
                      true_circles)
    return rows, record


def run_prediction(model, images: list[Path], out: Path, *, labels_dir: Path | None = None,
                   threshold: float = 0.5, mode: str = "auto", overlap: int | None = None,
                   iou_threshold: float = 0.5, min_area: float = 0.0, mask_shape: str = "box",
                   channel_order: str = "bgr", figures: bool | int = True,
                   batch_size: int = 8, scale: float | None = None,
                   target_resolution: float | None = None,
                   train_resolution: float | None = None, scales=None, sigma: float = 1.0,
                   closing: int = 1, drop_nodata: bool = False,
                   progress: bool = True) -> dict:
    """Predict every image, write the outputs, return the metrics (when labels exist).

    Plain images (PNG/JPEG/BMP) as in the paper; rasters (GeoTIFF, JP2, ...; any bit depth)
    streamed through :mod:`crater_resunet.raster_predict` into GeoTIFFs and the catalogue
    (``craters.csv``; ``craters.gpkg`` for georeferenced ones).

    ``scales``: None (one scale, as before), ``"auto"`` (the image pyramid 1, 1/2, ... down to
    one model tile, :func:`crater_resunet.pyramid.auto_scales`), or a list such as
    ``[1, 0.5, 0.25]`` (relative to the raster's ``scale``); the scales are merged by the
    crater NMS. ``sigma`` / ``closing``: smoothing and closing before the threshold
    (:func:`crater_resunet.craters.extract_craters`); ``drop_nodata`` drops craters whose rim
    reaches nodata instead of flagging them (``nodata`` column)."""
    from tqdm import tqdm

    from crater_resunet import raster_predict as rp
    from crater_resunet.pyramid import parse_scales
    from shared.atomic import atomic_write_json

    out = Path(out)
    opts = dict(threshold=threshold, mode=mode, overlap=overlap, iou_threshold=iou_threshold,
                min_area=min_area, mask_shape=mask_shape, channel_order=channel_order,
                batch_size=batch_size, scales=parse_scales(scales), sigma=sigma,
                closing=closing)
    totals, rows, per_image, layers, n_fig = _Totals(), [], [], [], 0
    for path in tqdm(images, desc="predict", unit="img",
                     disable=not progress or len(images) < 3):
        if is_raster(path):
            s = rp.resolve_scale(path, scale, target_resolution, train_resolution)
            res = rp.predict_raster(model, path, out, scale=s, threshold=threshold,
                                    overlap=overlap,
                                    min_area=min_area, batch_size=batch_size,
                                    channel_order=channel_order, scales=opts["scales"],
                                    sigma=sigma, closing=closing, drop_nodata=drop_nodata,
                                    figure=bool(figures) and (figures is True
                                                              or n_fig < int(figures)))
            n_fig += bool(res["info"].get("overlay"))
            rows += res["rows"]
            per_image.append(res["info"])
            if res["layer"]:
                layers.append(res["layer"])
            continue
        fig = bool(figures) and (figures is True or n_fig < int(figures))
        r, record = predict_image(model, path, out, totals, opts, labels_dir, fig)
        n_fig += fig
        rows += r
        per_image.append(record)
    rp.write_catalogue_csv(out / "craters.csv", rows)
    if layers:
        rp.write_catalogue_gpkg(out / "craters.gpkg", layers)
    result = {"images": len(images), "craters_predicted": len(rows), "threshold": threshold,
              "iou_threshold": iou_threshold, "mode": mode, "scales": opts["scales"],
              "per_image": per_image}
    if any("tp" in r for r in per_image):
        result["pixel"], result["crater"] = totals.scores()
        result["labelled_images"] = sum("tp" in r for r in per_image)
    atomic_write_json(out / "metrics.json", result)
    return result


def model_run_config(model_path: Path) -> dict:
    """The run config saved beside a model (``config.yaml``, or ``config.yml`` of older runs),
    laid over the paper profile; the paper profile alone for a model without one (e.g. a
    notebook-trained file)."""
    from crater_resunet.config import load_config
    from shared.configs import deep_merge, read_yaml_mapping

    cfg = load_config("paper")
    for name in ("config.yaml", "config.yml"):
        path = Path(model_path).parent / name
        if path.is_file():
            return deep_merge(cfg, read_yaml_mapping(path, UserError))
    return cfg


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import add_progress_argument, finish_parser
    from shared.runs import (
        nonnegative_float,
        nonnegative_int,
        positive_float,
        positive_int,
    )

    parser = argparse.ArgumentParser(
        prog="craters-predict",
        description="Crater masks, boxes (YOLO detections with confidence), a crater catalogue "
                    "(craters.csv; craters.gpkg for georeferenced rasters) and figures from a "
                    "trained .keras model; metrics when labels are found. Rasters (GeoTIFF, "
                    "JP2, PDS .IMG, ISIS .cub; any bit depth) are streamed in windows and give "
                    "probability and mask GeoTIFFs with the input's CRS.")
    parser.add_argument("inputs", nargs="+", type=Path, help="image/raster files or folders")
    parser.add_argument("--model", type=Path, required=True, help="trained .keras model")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--labels", type=Path, help="folder of YOLO ground-truth labels "
                        "(default: labels/ beside an images/ folder, if present)")
    parser.add_argument("--threshold", type=positive_float, default=0.5, help="mask threshold")
    parser.add_argument("--mode", choices=["auto", "resize", "tile"], default="auto",
                        help="plain images: resize to the model input (paper), overlapping "
                             "tiles, or auto: tile images larger than twice the input (default)")
    parser.add_argument("--overlap", type=nonnegative_int,
                        help="tile overlap in pixels (default: a quarter of the model input "
                             "for images, 64 for rasters)")
    parser.add_argument("--scale", type=positive_float,
                        help="rasters: model pixels per input pixel (e.g. 0.5 halves the "
                             "raster before prediction)")
    parser.add_argument("--target-resolution", type=positive_float, metavar="M_PER_PX",
                        help="rasters: resample to this many metres per pixel (default: the "
                             "run config's data.resolution_m, when known)")
    parser.add_argument("--scales", default=None, metavar="auto|S1,S2,...",
                        help="image pyramid: 'auto' (1, 1/2, 1/4, ... down to the scale at "
                             "which the whole image fits one model tile) or a "
                             "list like 1,0.5,0.25 (relative to --scale for rasters); the "
                             "scales are merged by a crater NMS (DeepMoon criteria) into one "
                             "catalogue with a 'scale' column (default: one scale)")
    parser.add_argument("--smooth", type=nonnegative_float, default=1.0, metavar="SIGMA",
                        help="Gaussian smoothing (px) of the probability before the threshold "
                             "(0 = none)")
    parser.add_argument("--closing", type=nonnegative_int, default=1, metavar="PX",
                        help="radius of the binary closing after the threshold (0 = none)")
    parser.add_argument("--drop-nodata", action="store_true",
                        help="drop craters whose rim reaches nodata (default: keep them with "
                             "nodata=1 in the catalogue)")
    parser.add_argument("--iou", type=positive_float, default=0.5,
                        help="IoU to match a predicted box to a true crater")
    parser.add_argument("--min-area", type=nonnegative_float, default=None,
                        help="drop predicted blobs smaller than this many (input) pixels "
                             "(default: predict.min_area of the model's run config, else the "
                             "paper profile's)")
    parser.add_argument("--mask-shape", choices=["box", "ellipse"],
                        help="ground-truth mask shape (default: the model's run config, else box)")
    parser.add_argument("--channel-order", choices=["bgr", "rgb"],
                        help="channel order the model was trained with (default: its run "
                             "config, else bgr)")
    parser.add_argument("--max-figures", type=nonnegative_int, default=20,
                        help="write at most this many figures (0 = none)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="tiles per forward pass")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="arithmetic: auto = bf16 (mixed_bfloat16) on a CPU with native "
                             "bf16 (avx512_bf16/amx_bf16), else fp32; the model is rebuilt "
                             "in that precision with its own weights")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu or gpu; a device this machine lacks is an error")
    add_progress_argument(parser, aliases=())
    return finish_parser(parser)


def main(argv=None) -> int:
    from shared.runs import UserError, check_not_inputs, check_output_dir

    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold < 1.0 or not 0.0 < args.iou <= 1.0:
        parser.error("--threshold must be in (0, 1) and --iou in (0, 1]")
    if not args.smooth >= 0 or args.closing < 0:
        parser.error("--smooth and --closing must be >= 0")
    from crater_resunet.pyramid import parse_scales

    try:
        parse_scales(args.scales)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.model.is_file():
        raise UserError(f"{args.model}: model file not found")
    if args.labels is not None and not args.labels.is_dir():
        raise UserError(f"{args.labels}: labels folder not found")
    images = collect_images(args.inputs)
    check_output_dir(args.out)
    check_not_inputs([args.out], [*images, args.model])
    out_labels = (args.out / "labels").resolve()
    for image in images:
        truth = find_label(image, args.labels)
        if truth is not None and truth.resolve().parent == out_labels:
            raise UserError(f"{args.out}: predictions would overwrite the ground-truth labels "
                            f"in {truth.parent} (e.g. {truth.name}); choose another --out")
    cfg = model_run_config(args.model)
    min_area = args.min_area if args.min_area is not None else float(cfg["predict"]["min_area"])
    from shared.cli import check_keras_device, progress_enabled
    from shared.runs import quiet_tensorflow

    check_keras_device(args.device)
    quiet_tensorflow()
    from crater_resunet.model import load_model, with_precision

    model = with_precision(load_model(args.model, compile=False), args.precision)
    res = run_prediction(model, images, args.out, labels_dir=args.labels,
                         threshold=args.threshold, mode=args.mode, overlap=args.overlap,
                         iou_threshold=args.iou, min_area=min_area,
                         mask_shape=args.mask_shape or cfg["data"]["mask_shape"],
                         channel_order=args.channel_order or cfg["data"]["channel_order"],
                         figures=args.max_figures if args.max_figures > 0 else False,
                         batch_size=args.batch_size, scale=args.scale,
                         target_resolution=args.target_resolution,
                         train_resolution=cfg["data"].get("resolution_m"),
                         scales=args.scales, sigma=args.smooth, closing=args.closing,
                         drop_nodata=args.drop_nodata,
                         progress=progress_enabled(args.no_progress))
    print(f"{res['images']} image(s), {res['craters_predicted']} crater(s) -> {args.out}")
    if "pixel" in res:
        p, c = res["pixel"], res["crater"]
        print(f"pixel: dice {p['dice']:.4f} precision {p['precision']:.4f} recall "
              f"{p['recall']:.4f} accuracy {p['accuracy']:.4f}; craters (IoU >= {args.iou}): "
              f"P {c['crater_precision']:.4f} R {c['crater_recall']:.4f} F1 {c['crater_f1']:.4f}")
    return 0


def cli(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
