"""Synthetic rover-view Mars scenes in the exact S5Mars layout.

Each scene: a sky band with a hazy gradient, distant ridges on the horizon, a soil plain with a
perspective texture (noise sampled in ground-plane coordinates, so it shrinks towards the
horizon), sand patches with ripples, bedrock slabs with cracks, rocks with shading and cast
shadows (sizes follow the perspective), wheel traces receding to a vanishing point, holes with a
lit rim, rover parts at the frame edge; Mars colours, vignetting, camera noise and JPEG
compression. Labels are sparse like S5Mars: boundaries (a band a few pixels wide), the distant
strip just below the horizon, tiny objects and a few random "uncertain" blobs are NULL (raw 0).

Layout written under ``--out``::

    images/<stem>.jpg      RGB
    labels/<stem>.png      raw ids 0..9 (0 = NULL, 1 sky ... 9 hole)
    train.json test.json   JSON arrays of stems
    splits/labeled_1_<k>.txt  indices (into train.json) of the labelled samples
    meta.json              generation parameters (the folder is reused when they match)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SKY, RIDGE, SOIL, SAND, BEDROCK, ROCK, ROVER, TRACE, HOLE = range(9)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, octaves=(4, 8, 16, 32),
                  persistence: float = 0.55) -> np.ndarray:
    """Multi-octave value noise in [0, 1]."""
    import cv2

    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in octaves:
        g = rng.random((o + 1, o + 1)).astype(np.float32)
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    return (out - out.min()) / (np.ptp(out) + 1e-6)


def _noise1d(rng: np.random.Generator, n: int, knots: int) -> np.ndarray:
    xs = np.linspace(0, 1, knots)
    ys = rng.random(knots)
    fine = np.interp(np.linspace(0, 1, n), xs, ys)
    k = max(3, n // knots // 2 * 2 + 1)
    return np.convolve(np.pad(fine, k // 2, mode="edge"), np.ones(k) / k, mode="valid")[:n]


def _ground_texture(rng, h, w, horizon, tile: np.ndarray, scale: float) -> np.ndarray:
    """Sample ``tile`` in ground-plane coordinates: texture recedes towards the horizon."""
    import cv2

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dy = np.maximum(ys - horizon, 0.5)
    depth = h / dy  # 1 at the bottom, large near the horizon
    u = (xs - w / 2) * depth / w * scale + tile.shape[1] / 2
    v = depth * scale * 2.0
    th, tw = tile.shape
    return cv2.remap(tile, (u % tw).astype(np.float32), (v % th).astype(np.float32),
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def _ellipse_mask(h, w, cy, cx, ry, rx, angle=0.0, wobble=None) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ca, sa = np.cos(angle), np.sin(angle)
    dx, dy = xs - cx, ys - cy
    u = (dx * ca + dy * sa) / max(rx, 1e-3)
    v = (-dx * sa + dy * ca) / max(ry, 1e-3)
    r = np.sqrt(u ** 2 + v ** 2)
    if wobble is not None:
        theta = np.arctan2(v, u)
        r = r / (1 + sum(a * np.cos(k * theta + p) for k, a, p in wobble))
    return r <= 1.0


def render_scene(rng: np.random.Generator, h: int = 192, w: int = 256
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (H, W, 3) uint8 RGB and (H, W) uint8 *raw* label ids (0 = NULL)."""
    import cv2

    img = np.zeros((h, w, 3), np.float32)
    cls = np.full((h, w), SOIL, np.uint8)
    horizon = int(h * rng.uniform(0.22, 0.42))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    below = np.clip((ys - horizon) / max(h - horizon, 1), 0, 1)  # 0 at horizon, 1 at bottom

    # --- ground: soil with a perspective texture and a tint that varies per scene
    tile = _smooth_noise(rng, 256, 256, (8, 16, 32, 64), 0.6)
    tex = _ground_texture(rng, h, w, horizon, tile, rng.uniform(1.5, 3.0))
    soil_rgb = np.array([0.60, 0.42, 0.27]) * rng.uniform(0.85, 1.1) + rng.normal(0, 0.02, 3)
    img[:] = soil_rgb * (0.75 + 0.5 * tex[..., None])
    pebbles = (_ground_texture(rng, h, w, horizon, rng.random((128, 128)).astype(np.float32),
                               rng.uniform(3, 6)) > 0.93)
    img[pebbles] *= 0.7

    # --- sand patches (smooth, lighter, with ripples)
    for _ in range(rng.integers(1, 4)):
        cy = rng.uniform(horizon + 0.15 * (h - horizon), h)
        s = (cy - horizon) / (h - horizon)
        m = _ellipse_mask(h, w, cy, rng.uniform(0, w), (12 + 30 * s) * rng.uniform(0.6, 1.4),
                          (30 + 90 * s) * rng.uniform(0.6, 1.4), rng.uniform(-0.2, 0.2),
                          wobble=[(3, 0.15, rng.uniform(0, 6)), (5, 0.08, rng.uniform(0, 6))])
        m &= ys > horizon + 2
        ripple = 0.5 + 0.5 * np.sin(xs * 0.05 + np.maximum(ys - horizon, 0) ** 1.3 * 0.35
                                    * rng.uniform(0.7, 1.3))
        sand_rgb = np.array([0.78, 0.60, 0.40]) * rng.uniform(0.92, 1.08)
        img[m] = sand_rgb * (0.92 + 0.10 * ripple[m, None] + 0.04 * tex[m, None])
        cls[m] = SAND

    # --- bedrock slabs (flattened polygons, cracks)
    for _ in range(rng.integers(0, 3)):
        cy = rng.uniform(horizon + 0.2 * (h - horizon), h * 0.98)
        s = (cy - horizon) / (h - horizon)
        cx = rng.uniform(0, w)
        n = rng.integers(5, 9)
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.6, 1.0, n)
        rx, ry = (25 + 70 * s) * rng.uniform(0.7, 1.3), (8 + 28 * s) * rng.uniform(0.7, 1.3)
        pts = np.stack([cx + rad * rx * np.cos(ang), cy + rad * ry * np.sin(ang)], 1)
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [pts.astype(np.int32)], 1)
        m = m.astype(bool) & (ys > horizon + 2)
        rock_rgb = np.array([0.52, 0.40, 0.30]) * rng.uniform(0.85, 1.1)
        layer = _smooth_noise(rng, h, w, (6, 12, 24), 0.5)
        img[m] = rock_rgb * (0.85 + 0.3 * layer[m, None])
        cracks = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(2, 6)):
            p0 = pts[rng.integers(0, n)]
            p1 = np.array([cx, cy]) + rng.normal(0, [rx * 0.4, ry * 0.4])
            cv2.line(cracks, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, 1)
        img[m & (cracks > 0)] *= 0.55
        cls[m] = BEDROCK

    # --- wheel traces: two bands converging to a vanishing point on the horizon
    if rng.random() < 0.6:
        vx = rng.uniform(0.2 * w, 0.8 * w)
        base = rng.uniform(0.15 * w, 0.85 * w)
        gauge = rng.uniform(0.25, 0.45) * w
        width = rng.uniform(0.06, 0.1) * w
        start = horizon + rng.uniform(0.2, 0.5) * (h - horizon)
        tread = 0.5 + 0.5 * np.sign(np.sin((h / np.maximum(ys - horizon, 1)) * 6.0))
        for side in (-0.5, 0.5):
            bx = base + side * gauge
            frac = np.clip((ys - horizon) / (h - horizon), 1e-3, 1)
            centre = vx + (bx - vx) * frac
            half = width * frac / 2
            m = (np.abs(xs - centre) <= half) & (ys >= start)
            img[m] *= (0.66 + 0.16 * tread[m, None])
            cls[m] = TRACE

    # --- holes: dark flattened ellipses with a lit rim
    for _ in range(rng.integers(0, 3)):
        cy = rng.uniform(horizon + 0.25 * (h - horizon), h * 0.95)
        s = (cy - horizon) / (h - horizon)
        cx, rx = rng.uniform(0, w), (6 + 22 * s) * rng.uniform(0.7, 1.3)
        ry = rx * rng.uniform(0.3, 0.5)
        rim = _ellipse_mask(h, w, cy, cx, ry * 1.25, rx * 1.2)
        inner = _ellipse_mask(h, w, cy, cx, ry, rx)
        img[rim & ~inner] = np.minimum(img[rim & ~inner] * 1.25, 1)
        shade = np.clip((ys - (cy - ry)) / (2 * ry + 1e-3), 0, 1)
        img[inner] = np.array([0.16, 0.10, 0.07]) + 0.18 * shade[inner, None]
        cls[inner] = HOLE

    # --- rocks: shaded blobs with a cast shadow, nearer ones drawn last
    rocks = [rng.uniform(horizon + 3, h) for _ in range(rng.integers(4, 14))]
    light = np.array([-0.6, -0.8])  # from the upper left
    for cy in sorted(rocks):
        s = (cy - horizon) / (h - horizon)
        r = (2 + 22 * s) * rng.uniform(0.5, 1.6)
        cx = rng.uniform(0, w)
        rx, ry = r * rng.uniform(0.9, 1.4), r * rng.uniform(0.6, 0.9)
        wob = [(k, rng.uniform(0.02, 0.12), rng.uniform(0, 6)) for k in (2, 3, 5)]
        shadow = _ellipse_mask(h, w, cy + ry * 0.3, cx + rx * 0.45, ry * 0.6, rx * 0.9,
                               wobble=wob)
        img[shadow & (cls != ROCK)] *= 0.68
        m = _ellipse_mask(h, w, cy, cx, ry, rx, rng.uniform(-0.4, 0.4), wobble=wob)
        nx, ny = (xs - cx) / max(rx, 1), (ys - cy) / max(ry, 1)
        lam = np.clip(0.65 - 0.55 * (nx * light[0] + ny * light[1]), 0.25, 1.3)
        rock_rgb = np.array([0.38, 0.28, 0.21]) * rng.uniform(0.8, 1.25)
        img[m] = rock_rgb * lam[m, None] * (0.9 + 0.2 * tex[m, None])
        cls[m] = ROCK

    # --- sky and distant ridges
    ridge_top = horizon - (0.04 + 0.12 * rng.random()) * h * (0.3 + _noise1d(rng, w, 9))
    has_ridge = rng.random() < 0.85
    if not has_ridge:
        ridge_top = np.full(w, float(horizon))
    sky_top = np.array([0.60, 0.47, 0.36]) * rng.uniform(0.9, 1.1)
    sky_low = np.array([0.84, 0.70, 0.56]) * rng.uniform(0.95, 1.05)
    t = np.clip(ys / max(horizon, 1), 0, 1)[..., None]
    sky = sky_top * (1 - t) + sky_low * t
    sky_m = ys < ridge_top[None, :]
    img[sky_m] = sky[sky_m]
    cls[sky_m] = SKY
    if has_ridge:
        ridge_m = (ys >= ridge_top[None, :]) & (ys < horizon + 2)
        rtex = _smooth_noise(rng, h, w, (16, 32, 64), 0.6)
        ridge_rgb = np.array([0.50, 0.37, 0.27]) * (0.8 + 0.35 * rtex[..., None])
        haze = 0.45
        img[ridge_m] = (1 - haze) * ridge_rgb[ridge_m] + haze * sky_low
        cls[ridge_m] = RIDGE

    # --- rover parts at the frame edge (a deck corner, a wheel or a mast arm)
    if rng.random() < 0.45:
        side = rng.choice(["left", "right", "bottom"])
        m = np.zeros((h, w), np.uint8)
        if side == "bottom":
            x0 = rng.uniform(0, 0.6 * w)
            pts = np.array([[x0, h], [x0 + rng.uniform(0.2, 0.4) * w, h],
                            [x0 + rng.uniform(0.15, 0.35) * w, h - rng.uniform(0.08, 0.18) * h],
                            [x0 + rng.uniform(0.0, 0.1) * w, h - rng.uniform(0.06, 0.16) * h]])
        else:
            x_edge = 0 if side == "left" else w
            sgn = 1 if side == "left" else -1
            y0 = rng.uniform(0.55, 0.8) * h
            pts = np.array([[x_edge, y0], [x_edge + sgn * rng.uniform(0.12, 0.3) * w,
                                           y0 + rng.uniform(0.05, 0.15) * h],
                            [x_edge + sgn * rng.uniform(0.1, 0.25) * w, h], [x_edge, h]])
        cv2.fillPoly(m, [pts.astype(np.int32)], 1)
        m = m.astype(bool)
        metal = np.array([0.72, 0.71, 0.68]) * rng.uniform(0.85, 1.05)
        grad = 0.8 + 0.3 * (1 - below)
        img[m] = metal * grad[m, None]
        detail = (np.sin(xs * 0.6) > 0.92) & m
        img[detail] *= 0.45
        cls[m] = ROVER

    # --- camera: vignetting, blur, noise
    vig = 1 - 0.18 * (((xs - w / 2) / w) ** 2 + ((ys - h / 2) / h) ** 2) * 2
    img *= vig[..., None]
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    img += rng.normal(0, 0.018, img.shape).astype(np.float32)
    rgb = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return rgb, sparsify(rng, cls, horizon)


def sparsify(rng: np.random.Generator, cls: np.ndarray, horizon: int) -> np.ndarray:
    """Raw label ids with S5Mars-like NULL regions (class c -> raw c + 1, NULL -> 0)."""
    import cv2

    h, w = cls.shape
    raw = cls.astype(np.uint8) + 1
    k = np.ones((5, 5), np.uint8)
    boundary = cv2.dilate(cls, k) != cv2.erode(cls, k)
    raw[boundary] = 0
    far = int(horizon + rng.uniform(0.03, 0.08) * h)
    band = np.zeros_like(boundary)
    band[max(horizon - 1, 0):far] = True
    raw[band & (cls >= SOIL)] = 0
    # tiny connected regions are too uncertain to annotate
    for c in (ROCK, HOLE, BEDROCK, SAND):
        n, lab, stats, _ = cv2.connectedComponentsWithStats((cls == c).astype(np.uint8), 8)
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] < 40:
                raw[lab == i] = 0
    ys, xs = np.mgrid[0:h, 0:w]
    for _ in range(rng.integers(0, 4)):
        cy, cx = rng.uniform(horizon, h), rng.uniform(0, w)
        ry, rx = rng.uniform(5, 20), rng.uniform(10, 40)
        raw[((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1] = 0
    return raw


def generate(out: str | Path, n_train: int = 64, n_test: int = 16, height: int = 192,
             width: int = 256, labeled_every: int = 8, seed: int = 0,
             progress: bool = True) -> Path:
    """Write the dataset (reused when ``meta.json`` shows the same parameters)."""
    from PIL import Image
    from tqdm import tqdm

    from shared.atomic import atomic_path, atomic_write_json, atomic_write_text

    out = Path(out)
    params = dict(n_train=n_train, n_test=n_test, height=height, width=width,
                  labeled_every=labeled_every, seed=seed, version=1)
    meta = out / "meta.json"
    if meta.is_file() and json.loads(meta.read_text()).get("params") == params:
        return out
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    train = [f"syn_train_{i:04d}" for i in range(n_train)]
    test = [f"syn_test_{i:04d}" for i in range(n_test)]
    counts = np.zeros(10, np.int64)
    for i, stem in enumerate(tqdm(train + test, desc="synthetic scenes", disable=not progress)):
        rng = np.random.default_rng([seed, i])
        rgb, raw = render_scene(rng, height, width)
        counts += np.bincount(raw.ravel(), minlength=10)
        with atomic_path(out / "images" / f"{stem}.jpg") as tmp:
            Image.fromarray(rgb).save(tmp, format="JPEG", quality=92)
        with atomic_path(out / "labels" / f"{stem}.png") as tmp:
            Image.fromarray(raw, mode="L").save(tmp, format="PNG")
    atomic_write_json(out / "train.json", train)
    atomic_write_json(out / "test.json", test)
    rng = np.random.default_rng(seed + 12345)
    n_lab = max(1, n_train // labeled_every)
    lab = sorted(rng.choice(n_train, n_lab, replace=False).tolist())
    atomic_write_text(out / "splits" / f"labeled_1_{labeled_every}.txt",
                      "".join(f"{i}\n" for i in lab))
    atomic_write_json(meta, {"params": params, "raw_id_pixels": counts.tolist(),
                             "null_fraction": float(counts[0] / counts.sum()),
                             "classes": ["NULL", "sky", "ridge", "soil", "sand", "bedrock",
                                         "rock", "rover", "trace", "hole"]})
    return out


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m s5mars_ssl.data.synthetic",
        description="Generate synthetic rover-view Mars scenes in the S5Mars layout (images/*.jpg, "
                    "labels/*.png raw ids, train/test JSON lists, a labelled split file).")
    p.add_argument("--out", default="datasets/s5mars_ssl/synthetic", help="output folder")
    p.add_argument("--n-train", type=int, default=64, help="training scenes (default 64)")
    p.add_argument("--n-test", type=int, default=16, help="test scenes (default 16)")
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--labeled-every", type=int, default=8,
                   help="label 1/k of the training scenes (default 8 -> splits/labeled_1_8.txt)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from shared.errors import UserError
    from shared.runs import check_output_dir

    for name in ("n_train", "n_test", "height", "width", "labeled_every"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    if args.height < 64 or args.width < 64:
        raise UserError("--height and --width must be at least 64")
    check_output_dir(args.out)
    out = generate(args.out, args.n_train, args.n_test, args.height, args.width,
                   args.labeled_every, args.seed)
    print(f"dataset at {out}")
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
