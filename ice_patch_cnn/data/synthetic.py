"""Synthetic HiRISE-like scenes of the southern mid-latitudes with ice-patch ground truth.

Nothing here is real HiRISE data: the scenes only mimic what the paper's classifier must tell
apart, so the whole pipeline (chunker, classifier, survey rules, scoring) can run end to end
offline. A scene (north up, about 0.25 m/px) is rendered as follows.

* **Relief**: smooth low-frequency terrain, small bowl craters with rims, single boulders and
  boulder clusters ("stone fields"), as a height map in pixel units.
* **Illumination**: afternoon sun from the north-west (azimuth 280-340 deg clockwise from north,
  elevation 20-45 deg): Lambertian shading of the height map plus cast shadows found by marching
  towards the sun, with a diffuse sky term so shadows are dark but not black.
* **Ice patches** (scene kinds ``good`` and ``hazy_good``): small bright patches (radii 3-14 px)
  with diffuse (blurred) edges placed on the poleward (south, image-down) shadowed side of
  boulders and on the pole-facing inner wall of craters. They are painted over the rendered
  image and are not part of the relief, so they cast no shadow of their own. Each patch gets
  an id in a label raster (the patch's pixels with opacity >= 0.5).
* **Distractors** (every kind): bright rocks (high albedo boulders, which do cast shadows),
  bright deposits on sun-facing (north-west-facing) slopes, dark CO2-sublimation spots, haze
  (contrast loss; strong in ``hazy_good``), isolated saturated pixels (value 255), sensor noise,
  and black no-data borders of a slightly rotated map-projected footprint (sometimes a band of
  missing lines).
* ``covered`` scenes: much of the surface still under seasonal frost (large bright areas with
  dark spots): the paper's "too much ice" images, icy but not "sufficient".

Ground truth: the image-level truth is ``good`` for ``good``/``hazy_good`` (small patches, the
images the survey looks for) and ``bad`` otherwise, with ``has_ice`` true for
``good``/``hazy_good``/``covered``. Chunk-level truth (:func:`chunk_truth`) comes from the patch
labels: 1 when some patch has at least ``min_share`` (0.5) of its area in the chunk, ``-1``
("hard", left out of training like the paper's 252 hard chunks) when a patch is cut with
between ``hard_share`` (0.15) and ``min_share`` of it inside, else 0 (frost cover counts as 0,
as in the paper's labelling).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("good", "hazy_good", "clean", "covered")
TRUTH = {"good": "good", "hazy_good": "good", "clean": "bad", "covered": "bad"}
HAS_ICE = {"good": True, "hazy_good": True, "clean": False, "covered": True}
SCENE_FIELDS = ["name", "kind", "truth", "has_ice", "n_patches", "image", "labels", "meta"]


@dataclass
class Scene:
    image: np.ndarray          # (H, W) uint8, 0 = no-data
    labels: np.ndarray         # (H, W) uint16 patch ids, 0 = no small ice patch
    meta: dict


# --------------------------------------------------------------------------- relief

def _smooth_noise(rng, shape, sigma, amplitude):
    from scipy import ndimage

    small = (max(4, int(shape[0] / sigma * 2)), max(4, int(shape[1] / sigma * 2)))
    field = ndimage.gaussian_filter(rng.standard_normal(small), 1.0)
    field = ndimage.zoom(field, (shape[0] / small[0], shape[1] / small[1]), order=1)
    field = field[: shape[0], : shape[1]]
    if field.shape != tuple(shape):
        field = np.pad(field, [(0, shape[0] - field.shape[0]), (0, shape[1] - field.shape[1])],
                       mode="edge")
    field /= max(float(field.std()), 1e-6)
    return amplitude * field


def _add_crater(h, yc, xc, r, depth_ratio=0.25):
    y0, y1 = max(0, int(yc - 1.6 * r)), min(h.shape[0], int(yc + 1.6 * r) + 1)
    x0, x1 = max(0, int(xc - 1.6 * r)), min(h.shape[1], int(xc + 1.6 * r) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(yy - yc, xx - xc) / r
    depth = depth_ratio * r
    bowl = np.where(d < 1, depth * (d**2 - 1), 0.0)
    rim = 0.25 * depth * np.exp(-(((d - 1) / 0.22) ** 2))
    h[y0:y1, x0:x1] += bowl + rim


def _add_boulder(h, yc, xc, r):
    y0, y1 = max(0, int(yc - r) - 1), min(h.shape[0], int(yc + r) + 2)
    x0, x1 = max(0, int(xc - r) - 1), min(h.shape[1], int(xc + r) + 2)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d2 = ((yy - yc) ** 2 + (xx - xc) ** 2) / (r * r)
    cap = np.where(d2 < 1, 1.1 * r * np.sqrt(np.clip(1 - d2, 0, 1)), 0.0)
    h[y0:y1, x0:x1] = np.maximum(h[y0:y1, x0:x1], cap)


def _shade(h, azimuth_deg, elevation_deg):
    """Lambertian term and cast-shadow mask for a sun at (azimuth from north, elevation)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    # image axes: x to the east (right), y to the south (down); sun direction vector
    sx, sy, sz = np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)
    gy, gx = np.gradient(h)
    norm = np.sqrt(gx**2 + gy**2 + 1.0)
    lambert = np.clip((-gx * sx - gy * sy + sz) / norm, 0.0, None)
    # cast shadows: a pixel is shadowed when the terrain towards the sun rises above the ray
    tan_el = np.tan(el)
    horiz = np.hypot(sx, sy)
    dx, dy = sx / horiz, sy / horiz
    relief = float(h.max() - h.min())
    steps = int(min(64, np.ceil(relief / max(tan_el, 1e-3)) + 1))
    pad = steps + 2
    hp = np.pad(h, pad, mode="edge")
    shadow = np.zeros(h.shape, dtype=bool)
    H, W = h.shape
    for k in range(1, steps + 1):
        oy, ox = int(round(k * dy)), int(round(k * dx))
        ahead = hp[pad + oy: pad + oy + H, pad + ox: pad + ox + W]
        shadow |= ahead > h + k * tan_el + 0.3
    return lambert, shadow


def _blob(shape, yc, xc, ry, rx, angle, soft):
    """Soft elliptical mask (0..1) in a local box; returns (slices, alpha)."""
    from scipy import ndimage

    R = int(max(ry, rx) + 3 * soft + 2)
    y0, y1 = max(0, int(yc) - R), min(shape[0], int(yc) + R + 1)
    x0, x1 = max(0, int(xc) - R), min(shape[1], int(xc) + R + 1)
    if y0 >= y1 or x0 >= x1:
        return None, None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - xc) * c + (yy - yc) * s) / rx
    v = (-(xx - xc) * s + (yy - yc) * c) / ry
    hard = (u * u + v * v <= 1).astype(np.float32)
    alpha = ndimage.gaussian_filter(hard, soft) if soft > 0 else hard
    return (slice(y0, y1), slice(x0, x1)), np.clip(alpha, 0, 1)


# --------------------------------------------------------------------------- a scene

def make_scene(rng: np.random.Generator, height: int, width: int, kind: str,
               name: str = "scene") -> Scene:
    """Render one scene of ``kind`` (see module docstring)."""
    from scipy import ndimage

    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {KINDS}")
    shape = (int(height), int(width))
    area = shape[0] * shape[1] / 1e6  # in megapixels
    az = float(rng.uniform(280, 340))
    el = float(rng.uniform(20, 45))
    h = _smooth_noise(rng, shape, 200, 6.0) + _smooth_noise(rng, shape, 40, 1.5)
    craters = []
    for _ in range(rng.poisson(6 * area) + 1):
        r = float(rng.uniform(14, 70))
        yc, xc = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        _add_crater(h, yc, xc, r)
        craters.append((yc, xc, r))
    boulders = []
    n_fields = rng.poisson(5 * area) + 1
    for _ in range(n_fields):   # stone fields: clusters of boulders
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        spread = rng.uniform(40, 160)
        for _ in range(rng.integers(15, 60)):
            boulders.append((cy + rng.normal(0, spread), cx + rng.normal(0, spread),
                             float(rng.uniform(2.0, 6.0))))
    for _ in range(rng.poisson(150 * area)):   # scattered single rocks
        boulders.append((rng.uniform(0, shape[0]), rng.uniform(0, shape[1]),
                         float(rng.uniform(1.5, 5.0))))
    boulders = [b for b in boulders if 0 <= b[0] < shape[0] and 0 <= b[1] < shape[1]]
    base = h.copy()
    rocks = np.zeros(shape, dtype=np.float64)
    for yc, xc, r in boulders:
        _add_boulder(rocks, yc, xc, r)
    h = base + rocks
    lambert, shadow = _shade(h, az, el)

    albedo = 0.24 + _smooth_noise(rng, shape, 120, 0.025) + _smooth_noise(rng, shape, 8, 0.01)
    rock_mask = rocks > 0.05
    # bright rocks (they have relief, hence shading and a shadow)
    bright = np.zeros(shape, dtype=bool)
    for yc, xc, r in boulders:
        if rng.random() < 0.12:
            y0, y1 = max(0, int(yc - r)), min(shape[0], int(yc + r) + 1)
            x0, x1 = max(0, int(xc - r)), min(shape[1], int(xc + r) + 1)
            bright[y0:y1, x0:x1] |= rock_mask[y0:y1, x0:x1]
    albedo = np.where(bright, rng.uniform(0.55, 0.75), albedo)
    # bright deposits on sun-facing slopes (the south inner wall of craters faces the sun)
    for yc, xc, r in craters:
        if rng.random() < 0.35:
            sl, a = _blob(shape, yc + 0.55 * r, xc - 0.2 * r, 0.25 * r, 0.45 * r,
                          rng.uniform(-0.4, 0.4), 2.0)
            if sl is not None:
                albedo[sl] = albedo[sl] * (1 - a) + a * rng.uniform(0.45, 0.6)
    # dark CO2 sublimation spots
    n_spots = rng.poisson((250 if kind == "covered" else 25) * area)
    spot_c = [(rng.uniform(0, shape[0]), rng.uniform(0, shape[1]))
              for _ in range(max(1, n_spots // 8))]
    for _ in range(n_spots):
        cy, cx = spot_c[rng.integers(len(spot_c))]
        sl, a = _blob(shape, cy + rng.normal(0, 60), cx + rng.normal(0, 60),
                      rng.uniform(2, 7), rng.uniform(2, 7), rng.uniform(0, np.pi), 1.5)
        if sl is not None:
            albedo[sl] = albedo[sl] * (1 - a) + a * 0.07
    # seasonal frost cover
    if kind == "covered":
        frost = _smooth_noise(rng, shape, 150, 1.0)
        thresh = np.quantile(frost, rng.uniform(0.3, 0.6))
        a = ndimage.gaussian_filter((frost > thresh).astype(np.float32), 4.0)
        albedo = albedo * (1 - a) + a * rng.uniform(0.6, 0.75)
    ambient = 0.28
    img = albedo * (0.9 * lambert * (~shadow) + ambient)

    labels = np.zeros(shape, dtype=np.uint16)
    patches = []
    if kind in ("good", "hazy_good"):
        n_regions = int(rng.integers(3, 7))
        regions = [(rng.uniform(0.1, 0.9) * shape[0], rng.uniform(0.1, 0.9) * shape[1],
                    rng.uniform(150, 350)) for _ in range(n_regions)]
        sites = []
        for yc, xc, r in boulders:
            if r >= 2.5 and any(np.hypot(yc - ry, xc - rx) < rr for ry, rx, rr in regions):
                sites.append((yc + r + 1.0, xc + 0.5 * r, r))          # poleward of a rock
        for yc, xc, r in craters:
            if any(np.hypot(yc - ry, xc - rx) < rr for ry, rx, rr in regions):
                sites.append((yc - 0.6 * r, xc, 0.35 * r))             # pole-facing inner wall
        rng.shuffle(sites)
        n_patch = min(len(sites), int(rng.integers(8, 16) * n_regions))
        for i, (yc, xc, r) in enumerate(sites[:n_patch], start=1):
            ry = float(np.clip(rng.uniform(0.5, 1.1) * r + 1.5, 3, 9))
            rx = float(np.clip(ry * rng.uniform(1.0, 1.8), 3, 14))
            cy = yc + 0.6 * ry
            sl, a = _blob(shape, cy, xc, ry, rx, rng.uniform(-0.5, 0.5), 1.2)
            if sl is None:
                continue
            value = rng.uniform(0.42, 0.62)
            img[sl] = img[sl] * (1 - a) + a * value
            labels[sl][a >= 0.5] = i
            patches.append({"id": i, "y": round(float(cy), 1), "x": round(float(xc), 1),
                            "ry": round(ry, 1), "rx": round(rx, 1)})
    # haze: contrast loss towards a veil brightness
    haze = rng.uniform(0.0, 0.15) if kind != "hazy_good" else rng.uniform(0.45, 0.65)
    veil = 0.3 + _smooth_noise(rng, shape, 300, 0.03)
    img = img * (1 - haze) + haze * veil
    img = img + rng.normal(0, 0.008, shape)
    img8 = np.clip(np.rint(img / 0.85 * 255), 1, 254).astype(np.uint8)
    # isolated saturated pixels (processing / transmission errors)
    n_specks = int(rng.poisson(300 * area)) if rng.random() < 0.7 else 0
    ys, xs = rng.integers(0, shape[0], n_specks), rng.integers(0, shape[1], n_specks)
    img8[ys, xs] = 255
    # black no-data border of a slightly rotated footprint, sometimes missing lines
    angle = np.radians(rng.uniform(2, 6)) * rng.choice([-1, 1])
    yy, xx = np.mgrid[0: shape[0], 0: shape[1]]
    cy, cx = shape[0] / 2, shape[1] / 2
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    inside = (np.abs(u) < 0.47 * shape[1]) & (np.abs(v) < 0.49 * shape[0])
    if rng.random() < 0.25:
        y0 = int(rng.uniform(0.2, 0.8) * shape[0])
        inside[y0: y0 + int(rng.integers(3, 30))] = False
    img8[~inside] = 0
    labels[~inside] = 0
    meta = {"name": name, "kind": kind, "truth": TRUTH[kind], "has_ice": HAS_ICE[kind],
            "height": shape[0], "width": shape[1], "sun_azimuth": round(az, 1),
            "sun_elevation": round(el, 1), "haze": round(float(haze), 3),
            "n_specks": n_specks, "n_patches": len(patches), "patches": patches}
    return Scene(img8, labels, meta)


# --------------------------------------------------------------------------- chunk truth

def chunk_truth(labels: np.ndarray, size: int, min_share: float = 0.5,
                hard_share: float = 0.15) -> dict[tuple[int, int], int]:
    """Chunk labels on the chunker's grid: 1 ice patch, 0 none, -1 hard (cut patch)."""
    totals = np.bincount(labels.ravel())
    n_rows, n_cols = -(-labels.shape[0] // size), -(-labels.shape[1] // size)
    out = {}
    for r in range(n_rows):
        for c in range(n_cols):
            block = labels[r * size:(r + 1) * size, c * size:(c + 1) * size]
            counts = np.bincount(block.ravel(), minlength=totals.size)
            counts[0] = 0
            ids = np.nonzero(counts)[0]
            if ids.size == 0:
                out[r, c] = 0
                continue
            share = counts[ids] / totals[ids]
            out[r, c] = 1 if (share >= min_share).any() else (
                -1 if (share >= hard_share).any() else 0)
    return out


# --------------------------------------------------------------------------- datasets

def kind_list(proportions: dict[str, float], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` kinds in the given proportions (largest remainders), shuffled."""
    bad = sorted(set(proportions) - set(KINDS))
    if bad:
        raise ValueError(f"unknown scene kind(s) {bad}; expected {KINDS}")
    total = sum(proportions.values())
    raw = {k: n * v / total for k, v in proportions.items()}
    counts = {k: int(np.floor(v)) for k, v in raw.items()}
    order = sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)
    for k in order[: n - sum(counts.values())]:
        counts[k] += 1
    kinds = [k for k in proportions for _ in range(counts[k])]
    rng.shuffle(kinds)
    return kinds


def generate_scenes(out_dir: str | Path, n: int, size: Sequence[int],
                    proportions: dict[str, float], seed: int = 0, prefix: str = "SYN",
                    progress: bool = True) -> list[dict]:
    """Write ``n`` scenes (GeoTIFF image + label raster + JSON) and ``scenes.csv``.

    Scenes already on disk (same name, kind and size) are reused, so a re-run only adds what
    is missing.
    """
    from tqdm import tqdm

    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.rasters import write_geotiff

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = kind_list(proportions, n, np.random.default_rng(seed))
    rows = []
    for i, kind in enumerate(tqdm(kinds, desc=f"scenes {out.name}", disable=not progress)):
        name = f"{prefix}_{i:04d}"
        img_path, lab_path, meta_path = (out / f"{name}.tif", out / f"{name}_ice.tif",
                                         out / f"{name}.json")
        meta = None
        if meta_path.exists() and img_path.exists() and lab_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if (meta.get("kind"), meta.get("height"), meta.get("width")) != (
                    kind, int(size[0]), int(size[1])):
                meta = None   # made with other settings: render again
        if meta is None:
            scene = make_scene(np.random.default_rng([seed, i]), size[0], size[1], kind, name)
            write_geotiff(img_path, scene.image, nodata=0)
            write_geotiff(lab_path, scene.labels)
            atomic_write_json(meta_path, scene.meta)
            meta = scene.meta
        rows.append({"name": name, "kind": meta["kind"], "truth": meta["truth"],
                     "has_ice": int(meta["has_ice"]), "n_patches": meta["n_patches"],
                     "image": img_path.name, "labels": lab_path.name, "meta": meta_path.name})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SCENE_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "scenes.csv", buf.getvalue())
    return rows


def write_large_scene(path: str | Path, height: int, width: int, seed: int = 0,
                      tile: int = 2048, progress: bool = True) -> Path:
    """A HiRISE-sized 8-bit GeoTIFF (e.g. 20,000 x 60,000) written block by block.

    The mosaic repeats a few rendered ``tile`` x ``tile`` scenes (flipped at random) inside a
    slightly rotated footprint with black no-data borders. Memory stays at a few tiles: it
    exists to measure the chunker's peak memory on a realistic product size.
    """
    from rasterio.windows import Window
    from tqdm import tqdm

    from shared.rasters import geotiff_writer

    rng = np.random.default_rng(seed)
    tiles = [make_scene(np.random.default_rng([seed, k]), tile + 64, tile + 64, kind).image
             [32:-32, 32:-32] for k, kind in enumerate(("good", "clean", "covered", "good"))]
    angle = np.radians(3.0)
    cy, cx = height / 2, width / 2
    blocks = [(r, c) for r in range(0, height, tile) for c in range(0, width, tile)]
    with geotiff_writer(path, width=width, height=height, count=1, dtype="uint8",
                        nodata=0) as dst:
        for r, c in tqdm(blocks, desc="large scene", disable=not progress):
            h, w = min(tile, height - r), min(tile, width - c)
            block = tiles[rng.integers(len(tiles))]
            if rng.random() < 0.5:
                block = block[::-1]
            if rng.random() < 0.5:
                block = block[:, ::-1]
            block = np.maximum(block[:h, :w], 1)
            yy, xx = np.mgrid[r:r + h, c:c + w]
            u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
            v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
            inside = (np.abs(u) < 0.47 * width) & (np.abs(v) < 0.49 * height)
            dst.write(np.where(inside, block, 0).astype(np.uint8)[None], window=Window(c, r, w, h))
    return Path(path)


def _parse_kinds(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad kind share {part!r} (use kind=share)") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    from shared.runs import check_output_dir

    parser = argparse.ArgumentParser(
        description="Generate synthetic HiRISE-like scenes (8-bit GeoTIFF, no-data 0) with "
                    "ice-patch labels and image-level truth: <out>/<prefix>_NNNN.tif, "
                    "_ice.tif, .json and scenes.csv.")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--scenes", type=int, default=4, help="number of scenes")
    parser.add_argument("--size", type=int, nargs=2, default=(2048, 2048),
                        metavar=("HEIGHT", "WIDTH"), help="scene size in pixels")
    parser.add_argument("--kinds", type=_parse_kinds,
                        default={"good": 0.5, "clean": 0.3, "covered": 0.2},
                        help=f"kind=share list, kinds: {', '.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", default="SYN", help="scene name prefix")
    parser.add_argument("--large", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="instead: write one large mosaic <out>/<prefix>_LARGE.tif of this "
                             "size block by block (for memory measurements)")
    args = parser.parse_args(argv)
    check_output_dir(args.out)
    if args.large:
        path = write_large_scene(args.out / f"{args.prefix}_LARGE.tif", *args.large,
                                 seed=args.seed)
        print(f"wrote {path}")
        return 0
    if args.scenes < 1 or min(args.size) < 64:
        parser.error("need at least one scene of at least 64 x 64 pixels")
    try:
        rows = generate_scenes(args.out, args.scenes, args.size, args.kinds, args.seed,
                               args.prefix)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"{len(rows)} scenes in {args.out} (scenes.csv)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
