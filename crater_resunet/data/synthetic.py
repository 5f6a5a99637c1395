"""Synthetic lunar-like crater tiles in the YOLO layout (for tests and as a second data set).

Each tile is a textured, gently undulating plain peppered with tiny unlabelled pits, on which
craters are placed with a power-law size-frequency distribution (N(>D) ~ D^-alpha). A crater
is a parabolic bowl with a raised rim and a decaying, noisy ejecta blanket; the height field is
hill-shaded under a low sun, so craters show the lit and shadowed walls of real imagery. Every
crater at least ``min_diameter`` pixels wide is labelled with the box of its rim, as in
LU3M6TGT (class 0). Always synthetic: results on it are named so.

    python -m crater_resunet.data.synthetic --out datasets/crater_resunet/synthetic
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _smooth_noise(rng: np.random.Generator, size: int, scales=(4, 16, 48)) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = np.zeros((size, size), dtype=np.float64)
    for s in scales:
        layer = gaussian_filter(rng.standard_normal((size, size)), s, mode="wrap")
        out += layer / (layer.std() + 1e-9) * (s / max(scales))
    return out


def _crater_height(xx, yy, cx, cy, radius, rng) -> np.ndarray:
    r = np.hypot(xx - cx, yy - cy) / radius
    depth = 0.2 * radius
    bowl = np.where(r < 1.0, -depth * (1.0 - r**2), 0.0)
    rim = 0.06 * radius * np.exp(-(((r - 1.0) / 0.18) ** 2))
    ejecta = np.where(r > 1.0, 0.05 * radius * r**-3.0, 0.0)
    ejecta *= 1.0 + 0.6 * rng.standard_normal(r.shape)
    return bowl + rim + ejecta


def _hillshade(height: np.ndarray, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    gy, gx = np.gradient(height)
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    light = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    norm = np.sqrt(gx**2 + gy**2 + 1.0)
    shade = (-gx * light[0] - gy * light[1] + light[2]) / norm
    return np.clip(shade, 0.0, 1.0)


def sample_diameters(rng: np.random.Generator, n: int, d_min: float, d_max: float,
                     alpha: float) -> np.ndarray:
    """Diameters with cumulative N(>D) ~ D^-alpha between ``d_min`` and ``d_max``."""
    u = rng.random(n)
    lo, hi = d_min**-alpha, d_max**-alpha
    return (lo - u * (lo - hi)) ** (-1.0 / alpha)


def make_tile(rng: np.random.Generator, size: int = 256, n_craters: int | None = None,
              min_diameter: float = 6.0, max_diameter: float | None = None,
              alpha: float = 1.8, min_visible: float = 0.5):
    """One synthetic tile: (uint8 gray image (size, size), labels (N, 5) class xc yc w h)."""
    max_diameter = max_diameter or size / 3
    if n_craters is None:
        n_craters = int(rng.integers(3, 14))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    height = 3.0 * _smooth_noise(rng, size)
    # unlabelled background pits, smaller than anything we label
    for d in sample_diameters(rng, int(rng.integers(20, 60)), 1.5, min_diameter * 0.6, 2.5):
        cx, cy = rng.uniform(0, size, 2)
        height += _crater_height(xx, yy, cx, cy, d / 2, rng) * 0.7
    labels = []
    diameters = np.sort(sample_diameters(rng, n_craters, min_diameter, max_diameter, alpha))
    for d in diameters[::-1]:  # big first, small ones superposed on them
        r = d / 2
        cx, cy = rng.uniform(-0.3 * r, size + 0.3 * r, 2)
        height += _crater_height(xx, yy, cx, cy, r, rng)
        x1, y1, x2, y2 = cx - r, cy - r, cx + r, cy + r
        cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, size), min(y2, size)
        inside = max(cx2 - cx1, 0) * max(cy2 - cy1, 0) / (d * d)
        if inside >= min_visible:
            labels.append([0, (cx1 + cx2) / 2 / size, (cy1 + cy2) / 2 / size,
                           (cx2 - cx1) / size, (cy2 - cy1) / size])
    shade = _hillshade(height, rng.uniform(0, 360), rng.uniform(15, 35))
    albedo = 0.75 + 0.08 * _smooth_noise(rng, size, scales=(2, 8))
    img = shade * albedo + 0.03 * rng.standard_normal((size, size))
    img = np.clip((img - img.min()) / (np.ptp(img) + 1e-9) * 235 + 10, 0, 255).astype(np.uint8)
    return img, np.asarray(labels, dtype=np.float64).reshape(-1, 5)


def format_yolo(labels: np.ndarray) -> str:
    return "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)


def write_dataset(out: str | Path, n_train: int = 64, n_valid: int = 16, size: int = 256,
                  seed: int = 0, empty_fraction: float = 0.0, min_diameter: float = 6.0,
                  alpha: float = 1.8, overwrite: bool = False) -> dict:
    """Write ``out/{train,valid}/{images,labels}``; returns counts. Reuses a finished set."""
    import cv2

    from shared.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

    out = Path(out)
    meta = {"n_train": n_train, "n_valid": n_valid, "size": size, "seed": seed,
            "empty_fraction": empty_fraction, "min_diameter": min_diameter, "alpha": alpha}
    done = out / "synthetic.json"
    if done.exists() and not overwrite:
        import json

        old = json.loads(done.read_text())
        if all(old.get(k) == v for k, v in meta.items()):
            return old
    counts = dict(meta)
    for split, n, offset in (("train", n_train, 0), ("valid", n_valid, 1)):
        rng = np.random.default_rng([seed, offset])
        craters = 0
        for i in range(n):
            empty = rng.random() < empty_fraction
            img, labels = make_tile(rng, size, n_craters=0 if empty else None,
                                    min_diameter=min_diameter, alpha=alpha)
            ok, buf = cv2.imencode(".png", img)
            if not ok:
                raise RuntimeError("PNG encoding failed")
            atomic_write_bytes(out / split / "images" / f"syn_{split}_{i:05d}.png", buf.tobytes())
            atomic_write_text(out / split / "labels" / f"syn_{split}_{i:05d}.txt",
                              format_yolo(labels))
            craters += len(labels)
        counts[f"{split}_craters"] = craters
    atomic_write_json(done, counts)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crater_resunet.data.synthetic",
        description="Write synthetic lunar-like crater tiles in the YOLO layout "
                    "(<out>/{train,valid}/{images,labels}).")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--train", type=int, default=64, help="training tiles (default 64)")
    parser.add_argument("--valid", type=int, default=16, help="validation tiles (default 16)")
    parser.add_argument("--size", type=int, default=256, help="tile size in pixels (256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--empty-fraction", type=float, default=0.0,
                        help="fraction of tiles with no labelled crater (0)")
    parser.add_argument("--min-diameter", type=float, default=6.0,
                        help="smallest labelled crater, pixels (6)")
    parser.add_argument("--alpha", type=float, default=1.8,
                        help="power-law exponent of the cumulative size-frequency (1.8)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if present")
    args = parser.parse_args(argv)
    if args.train < 0 or args.valid < 0 or args.size < 32:
        parser.error("--train/--valid must be >= 0 and --size >= 32")
    if not 0.0 <= args.empty_fraction <= 1.0:
        parser.error("--empty-fraction must be in [0, 1]")
    counts = write_dataset(args.out, args.train, args.valid, args.size, args.seed,
                           args.empty_fraction, args.min_diameter, args.alpha, args.overwrite)
    print(f"{args.out}: {counts['n_train']} train tiles ({counts['train_craters']} craters), "
          f"{counts['n_valid']} valid tiles ({counts['valid_craters']} craters)")
    return 0


if __name__ == "__main__":
    from shared.runs import cli_main

    sys.exit(cli_main(main))
