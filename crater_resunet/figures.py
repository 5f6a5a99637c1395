"""Figures a crater scientist reads: predicted and true craters as circles on the image at its
native resolution (one image pixel = one figure pixel), a legend, and a scale bar for
georeferenced inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PRED_COLOR = (255, 60, 40)    # RGB: predicted craters
TRUE_COLOR = (40, 220, 255)   # RGB: true craters


def _nice_length(target: float) -> float:
    """1, 2 or 5 x 10^k not above ``target``."""
    k = np.floor(np.log10(target))
    for m in (5, 2, 1):
        if m * 10 ** k <= target:
            return float(m * 10 ** k)
    return float(10 ** k)


def _label(metres: float) -> str:
    return f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"


def draw_overlay(image: np.ndarray, pred: np.ndarray | None, truth: np.ndarray | None = None,
                 *, pixel_size_m: float | None = None, pred_label: str = "predicted",
                 truth_label: str = "true") -> np.ndarray:
    """(H, W, 3) uint8 RGB: ``image`` (grey or RGB, uint8 or float in [0, 1]) with circles of
    ``pred`` and ``truth`` ((N, 3) ``x, y, diameter`` in image pixels, pixel edges at
    integers), a legend and, with ``pixel_size_m``, a scale bar."""
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    out = np.ascontiguousarray(img[..., :3].copy())
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 800))
    shift = 2  # sub-pixel circle centres (1/4 px)
    for cat, color in ((truth, TRUE_COLOR), (pred, PRED_COLOR)):
        if cat is None:
            continue
        for x, y, d in np.asarray(cat, np.float64).reshape(-1, 3):
            c = (int(round((x - 0.5) * 4)), int(round((y - 0.5) * 4)))
            cv2.circle(out, c, max(1, int(round(d / 2 * 4))), color, thick, cv2.LINE_AA, shift)
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(1.2, max(h, w) / 1600))
    ft = max(1, round(fs * 1.5))
    entries = [(f"{pred_label} ({0 if pred is None else len(pred)})", PRED_COLOR)]
    if truth is not None:
        entries.append((f"{truth_label} ({len(truth)})", TRUE_COLOR))
    line_h = int(30 * fs) + 4
    box_w = max(cv2.getTextSize(t, font, fs, ft)[0][0] for t, _ in entries) + int(40 * fs) + 12
    cv2.rectangle(out, (4, 4), (4 + box_w, 8 + line_h * len(entries)), (0, 0, 0), -1)
    for i, (text, color) in enumerate(entries):
        yc = 8 + line_h * i + line_h // 2
        cv2.circle(out, (12 + int(10 * fs), yc), max(3, int(10 * fs)), color, ft, cv2.LINE_AA)
        cv2.putText(out, text, (12 + int(30 * fs), yc + int(8 * fs)), font, fs,
                    (255, 255, 255), ft, cv2.LINE_AA)
    if pixel_size_m:
        metres = _nice_length(w / 5 * pixel_size_m)
        px = int(round(metres / pixel_size_m))
        x0, y0 = 12, h - 14
        label = _label(metres)
        tw, th = cv2.getTextSize(label, font, fs, ft)[0]
        cv2.rectangle(out, (x0 - 6, y0 - th - 16), (x0 + max(px, tw) + 6, y0 + 8), (0, 0, 0),
                      -1)
        cv2.rectangle(out, (x0, y0 - 3), (x0 + px, y0 + 3), (255, 255, 255), -1)
        cv2.putText(out, label, (x0, y0 - 10), font, fs, (255, 255, 255), ft, cv2.LINE_AA)
    return out


def write_overlay(image: np.ndarray, pred: np.ndarray | None, png: str | Path,
                  truth: np.ndarray | None = None, **kw) -> Path:
    """:func:`draw_overlay` written atomically as a PNG at the image's native size."""
    import cv2

    from shared.atomic import atomic_write_bytes

    rgb = draw_overlay(image, pred, truth, **kw)
    ok, buf = cv2.imencode(".png", rgb[..., ::-1])
    if not ok:
        raise ValueError(f"{png}: PNG encoding failed")
    atomic_write_bytes(png, buf.tobytes())
    return Path(png)


def circles(rows: list[dict]) -> np.ndarray:
    """(N, 3) ``x, y, diameter`` of catalogue rows."""
    return np.array([[r["x"], r["y"], r["diameter"]] for r in rows], np.float64).reshape(-1, 3)
