"""Crater prediction on plain images (PNG/JPEG/BMP) held in memory.

A small image is resized to the model input and back (the paper); a large one is cut into
overlapping model tiles at its own resolution by ``shared.engine`` and the tiles are averaged
(``crater_resunet.pyramid.BLEND``). Per image: probability and cleaned mask PNGs, YOLO
detections, craters (:mod:`crater_resunet.craters`), the paper's figure and an overlay; pixel
and crater scores when a YOLO label file is found.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


# ------------------------------------------------------------------------ probability maps
def predict_probability(model, image: np.ndarray, mode: str = "auto", overlap: int | None = None,
                        batch_size: int = 8, tile_above: float = 2.0) -> np.ndarray:
    """(H, W) float32 crater probability of a float (H, W, 3) image in [0, 1].

    ``mode``: ``resize`` (the paper: resize to the model input and back), ``tile`` (overlapping
    tiles at the image's resolution through ``shared.engine``, averaged; an image smaller
    than a tile is zero-padded), ``auto`` (tile when a side exceeds ``tile_above`` times the
    model input, else resize). ``overlap`` defaults to a quarter tile.
    """
    import cv2

    from crater_resunet.pyramid import as_predictor, tiled_probability

    fn, (th, tw) = as_predictor(model)
    h, w = image.shape[:2]
    if mode == "auto":
        mode = "tile" if (h > tile_above * th or w > tile_above * tw) else "resize"
    if mode == "resize":
        x = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
        p = np.asarray(model.predict(x[None], verbose=0))[0, ..., 0]
        return cv2.resize(p.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if mode != "tile":
        raise ValueError(f"mode must be auto, resize or tile, got {mode!r}")
    return tiled_probability(image, fn, (th, tw), overlap, batch_size, pad="zero")


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
    from shared.figures import save_figure

    return save_figure(fig, path, dpi=110)


# ------------------------------------------------------------------------------ one image
def find_label(image: Path, labels_dir: Path | None) -> Path | None:
    if labels_dir is not None:
        p = labels_dir / f"{image.stem}.txt"
        return p if p.is_file() else None
    if image.parent.name == "images":
        p = image.parent.parent / "labels" / f"{image.stem}.txt"
        if p.is_file():
            return p
    return None


class Totals:
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

    def merge(self, other: Totals) -> None:
        """Add another image's (or worker's) sums."""
        for mine, theirs in ((self.conf, other.conf), (self.crater, other.crater),
                             (self.soft, other.soft)):
            for k in mine:
                mine[k] += theirs[k]

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


def predict_image(model, path: Path, out: Path, totals: Totals, opts: dict,
                  labels_dir: Path | None, figure: bool) -> tuple[list[dict], dict]:
    """One plain image (PNG/JPEG/BMP): masks, YOLO detections, scores when labelled."""
    import cv2

    from crater_resunet.craters import crater_boxes, to_rows, truth_boxes, yolo_detections
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
