"""Synthetic crack scenes in the original dataset layout (two domains, deterministic).

Networks: a jittered Voronoi division of the plane (Y-junctions near 120 deg), whose ridges are
wobbled, then a hierarchical second generation that splits some cells with a thinner crack
running between two of their sides (T-junctions near 90 deg). Widths vary per segment.

* Earth desiccation cracks (EDC): bright dry-soil texture (per-clod tone, grain, mottling),
  dark sharp cracks, coarse cells.
* Mars intermediate-sized cracks (MIC): grayscale-as-RGB HiRISE look, smaller cells and thinner
  cracks at the same pixel size, low contrast, albedo patches, shading from a random relief,
  blur and sensor noise.

``generate_dataset`` writes labelled Mars training crops (cut by ``data/pre.py`` from larger
labelled scenes, as the original), labelled Mars test scenes, labelled Earth scenes, and
unlabelled Earth and Mars scenes, with the list files of ``data/mars.py``. Everything is a
function of the seed. Generate, never commit, the data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from shared.atomic import atomic_path, atomic_write_json, atomic_write_text

SUPERSAMPLE = 2


def smooth_noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std noise with features about ``scale`` pixels across."""
    h, w = shape
    gh, gw = max(2, int(np.ceil(h / scale)) + 2), max(2, int(np.ceil(w / scale)) + 2)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(small, (int(gw * scale), int(gh * scale)), interpolation=cv2.INTER_CUBIC)
    out = big[:h, :w]
    return (out - out.mean()) / (out.std() + 1e-6)


def _wobbly_polyline(p0: np.ndarray, p1: np.ndarray, amp: float, rng: np.random.Generator
                     ) -> np.ndarray:
    length = float(np.hypot(*(p1 - p0)))
    n = max(2, int(length / 6))
    t = np.linspace(0, 1, n + 1)[:, None]
    pts = p0 + t * (p1 - p0)
    if length > 0 and amp > 0:
        normal = np.array([-(p1 - p0)[1], (p1 - p0)[0]]) / length
        offs = rng.normal(0, amp, n + 1)
        offs = np.convolve(offs, np.ones(3) / 3, mode="same")
        offs[0] = offs[-1] = 0.0  # keep the junctions where they are
        pts = pts + offs[:, None] * normal
    return pts


def crack_network(size: tuple[int, int], cell: float, width: tuple[float, float],
                  rng: np.random.Generator, split_fraction: float = 0.5,
                  wobble: float = 0.08) -> np.ndarray:
    """Anti-aliased crack coverage in [0, 1] of shape ``size`` (the mask is ``> 0.5``)."""
    from scipy.spatial import Voronoi  # here, not at import: --help stays quick

    h, w = size
    s = SUPERSAMPLE
    canvas = np.zeros((h * s, w * s), np.uint8)
    ys = np.arange(-cell, h + 2 * cell, cell)
    xs = np.arange(-cell, w + 2 * cell, cell)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    pts = pts + rng.uniform(-0.45, 0.45, pts.shape) * cell
    vor = Voronoi(pts)
    verts = vor.vertices

    def draw(a: np.ndarray, b: np.ndarray, wid: float) -> None:
        line = _wobbly_polyline(a, b, wobble * cell, rng)
        wid_px = max(1, int(round(wid * s * rng.uniform(0.8, 1.2))))
        cv2.polylines(canvas, [np.round(line * s).astype(np.int32)], False, 255, wid_px,
                      lineType=cv2.LINE_8)

    for a, b in vor.ridge_vertices:
        if a < 0 or b < 0:
            continue
        draw(verts[a], verts[b], rng.uniform(*width))
    # hierarchical second generation: split some cells between two non-adjacent sides
    for region_index in vor.point_region:
        region = vor.regions[region_index]
        if len(region) < 4 or -1 in region or rng.random() > split_fraction:
            continue
        poly = verts[region]
        k = len(poly)
        i = int(rng.integers(k))
        j = (i + int(rng.integers(2, k - 1))) % k
        pa = poly[i] + rng.uniform(0.3, 0.7) * (poly[(i + 1) % k] - poly[i])
        pb = poly[j] + rng.uniform(0.3, 0.7) * (poly[(j + 1) % k] - poly[j])
        draw(pa, pb, rng.uniform(*width) * 0.7)
    cover = cv2.resize(canvas.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(cover, 0, 1)


def render_earth(cover: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright dry soil with dark, sharp cracks (RGB uint8)."""
    h, w = cover.shape
    mask = cover > 0.5
    red = rng.uniform(175, 215)
    base = np.array([red, red * rng.uniform(0.78, 0.86), red * rng.uniform(0.58, 0.68)])
    _, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    clod_tone = rng.normal(0, 10, labels.max() + 1)[labels]
    mottling = 9 * smooth_noise((h, w), 24, rng) + 4 * smooth_noise((h, w), 4, rng)
    grain = rng.normal(0, 5, (h, w))
    # clods are slightly darker towards their edges (curling)
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    rim = -12 * np.exp(-dist / 3.0)
    lum = clod_tone + mottling + grain + rim
    soil = base[None, None, :] + lum[..., None] * np.array([1.0, 0.95, 0.85])
    crack_colour = np.array([45, 35, 28]) + rng.uniform(-10, 15)
    crack = crack_colour[None, None, :] + rng.normal(0, 6, (h, w, 1))
    img = soil * (1 - cover[..., None]) + crack * cover[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def render_mars(cover: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dusty, low-contrast grayscale-as-RGB HiRISE-like scene (RGB uint8)."""
    h, w = cover.shape
    albedo = 0.5 + 0.06 * smooth_noise((h, w), 48, rng) + 0.03 * smooth_noise((h, w), 12, rng)
    relief = smooth_noise((h, w), 40, rng) * 6 + smooth_noise((h, w), 10, rng) * 1.5
    gy, gx = np.gradient(relief)
    sun = rng.uniform(0, 2 * np.pi)
    shading = 1 + 0.25 * (np.cos(sun) * gx + np.sin(sun) * gy)
    contrast = rng.uniform(0.06, 0.14) * (1 + 0.4 * smooth_noise((h, w), 32, rng)).clip(0.3, 2)
    # cracks are dark troughs with a faint bright rim on the sunward side
    blurred = cv2.GaussianBlur(cover, (0, 0), 1.2)
    rim = np.clip(np.roll(blurred, (int(round(np.sin(sun))), int(round(np.cos(sun)))),
                          axis=(0, 1)) - cover, 0, 1)
    lum = albedo * shading - contrast * cover + 0.3 * contrast * rim
    lum = cv2.GaussianBlur(lum.astype(np.float32), (0, 0), rng.uniform(0.6, 1.2))
    lum = lum + rng.normal(0, rng.uniform(0.008, 0.02), (h, w))
    gray = np.clip(lum * 255, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


DOMAINS = {
    # cell size (px) and crack width range (px) at the rendered resolution
    "earth": {"cell": (34.0, 52.0), "width": (2.5, 5.0), "render": render_earth},
    "mars": {"cell": (20.0, 32.0), "width": (1.6, 3.2), "render": render_mars},
}


def make_scene(domain: str, size: tuple[int, int], rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, mask uint8 in {0, 255}) pair of ``domain``."""
    spec = DOMAINS[domain]
    cover = crack_network(size, rng.uniform(*spec["cell"]), spec["width"], rng)
    image = spec["render"](cover, rng)
    return image, ((cover > 0.5) * 255).astype(np.uint8)


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def generate_dataset(out: str | Path, seed: int = 0, *, n_mars_large: int = 2,
                     large_size: int = 384, crops_per_large: int = 12, crop_size: int = 128,
                     n_mars_test: int = 8, test_size: int = 128, n_earth: int = 24,
                     earth_size: int = 160, n_earth_unlabelled: int = 24,
                     n_mars_unlabelled: int = 24, unlabelled_size: int = 160,
                     force: bool = False) -> Path:
    """Write the synthetic dataset under ``out``; reuse it when already complete."""
    from mars_cracknet.data.pre import cut_random_crops

    out = Path(out)
    params = {k: v for k, v in locals().items() if k not in {"out", "force", "cut_random_crops"}}
    meta_path = out / "synthetic.json"
    if not force and meta_path.is_file():
        if json.loads(meta_path.read_text(encoding="utf-8")).get("params") == params:
            return out
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {k: [] for k in
                                   ("mars_train", "mars_test", "earth", "earth_unlabelled", "mars")}
    large_dir = out / "large"
    for i in range(n_mars_large):
        img, mask = make_scene("mars", (large_size, large_size), rng)
        _write_png(large_dir / "imgs" / f"mars_large_{i:03d}.png", img)
        _write_png(large_dir / "masks" / f"mars_large_{i:03d}.png", mask)
        lists["mars_train"] += cut_random_crops(
            img, mask, out, f"mars_large_{i:03d}", n=crops_per_large, size=crop_size, rng=rng)
    jobs = [("mars_test", "mars", n_mars_test, test_size, True),
            ("earth", "earth", n_earth, earth_size, True),
            ("earth_unlabelled", "earth", n_earth_unlabelled, unlabelled_size, False),
            ("mars", "mars", n_mars_unlabelled, unlabelled_size, False)]
    for list_name, domain, n, size, labelled in jobs:
        for i in range(n):
            stem = f"{list_name}_{i:03d}"
            img, mask = make_scene(domain, (size, size), rng)
            _write_png(out / "imgs" / f"{stem}.png", img)
            if labelled:
                _write_png(out / "masks" / f"{stem}.png", mask)
            lists[list_name].append(stem)
    for name, stems in lists.items():
        atomic_write_text(out / "lists" / f"{name}.txt", "\n".join(stems) + "\n")
    atomic_write_json(meta_path, {"params": params, "counts": {k: len(v)
                                                                for k, v in lists.items()}})
    return out


def main(argv: list[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Generate synthetic Earth (EDC) and Mars (MIC) crack scenes in the "
                    "Mars-CrackNet layout (imgs/, masks/, lists/).")
    p.add_argument("--out", type=Path, default=Path("datasets/mars_cracknet/synthetic"),
                   help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-mars-large", type=int, default=2,
                   help="large labelled Mars scenes to cut training crops from")
    p.add_argument("--large-size", type=int, default=384)
    p.add_argument("--crops-per-large", type=int, default=12)
    p.add_argument("--crop-size", type=int, default=128)
    p.add_argument("--n-mars-test", type=int, default=8)
    p.add_argument("--test-size", type=int, default=128)
    p.add_argument("--n-earth", type=int, default=24)
    p.add_argument("--earth-size", type=int, default=160)
    p.add_argument("--n-earth-unlabelled", type=int, default=24)
    p.add_argument("--n-mars-unlabelled", type=int, default=24)
    p.add_argument("--unlabelled-size", type=int, default=160)
    p.add_argument("--force", action="store_true", help="regenerate even if present")
    a = p.parse_args(argv)
    for name in ("n_mars_large", "large_size", "crops_per_large", "crop_size", "n_mars_test",
                 "test_size", "n_earth", "earth_size", "n_earth_unlabelled",
                 "n_mars_unlabelled", "unlabelled_size"):
        if getattr(a, name) < 0 or (name.endswith("size") and getattr(a, name) < 16):
            p.error(f"--{name.replace('_', '-')} must be >= 16 for sizes and >= 0 for counts")
    if a.crop_size > a.large_size:
        p.error("--crop-size must not exceed --large-size")
    kwargs = {k: v for k, v in vars(a).items() if k not in {"out", "seed"}}
    out = generate_dataset(a.out, a.seed, **kwargs)
    print(f"synthetic dataset in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
