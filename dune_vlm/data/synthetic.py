"""Synthetic "satellite embedding" scenes of five Mars-analog dune regions.

Each region (Namib, Atacama, Mojave, Qaidam, Yilgarn) gets its own class mixture, wind direction,
UTM CRS and a 64-band GeoTIFF of unit-length pixel vectors that imitates Google Satellite Embedding
V1 at 10 m:

* a coherent class map: smooth random fields per class, weighted by the region's mixture, arg-maxed
  into landform patches (dune fields). Labels are field-level, as in dune-type maps: the flat
  interdune ground between isolated dunes (barchan, star, dome, parabolic, nebkha) belongs to its
  field, and only its texture tells the field type;
* a class-specific periodic relief texture: crescents (barchan), sinuous transverse ridges,
  wind-parallel linear ridges, multi-armed stars, round domes, U-shaped parabolics, dense nebkha
  hummocks, a crossing reticulate grid, low ripples on sand sheets, rough non-aeolian ground;
* per-pixel vector = class prototype + region shift + spatially correlated noise + texture
  modulation along a shared "relief" direction (and its down-wind derivative along an "aspect"
  direction), normalised to unit length. Prototypes of the dune classes are deliberately close,
  so single pixels are ambiguous and the texture/context must be used.

The label GeoTIFF shares the grid (uint8, 255 = nodata). A nodata border (an irregular clip like
an Earth Engine region export) surrounds each scene. ``generate_dataset`` then cuts the scenes
into the ``img_dir``/``ann_dir`` tile layout with :mod:`dune_vlm.prepare_tiles`, exactly as real
exports would be.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_origin

from shared.atomic import atomic_write_json
from shared.rasters import write_geotiff

NUM_CLASSES = 10
BANDS = 64
NODATA = -9999.0
LABEL_NODATA = 255
PIXEL_M = 10.0


@dataclass(frozen=True)
class Region:
    name: str
    epsg: int
    origin: tuple[float, float]  # upper-left easting, northing
    wind_deg: float
    mixture: tuple[float, ...]  # relative weight of classes 0..9


# Class order: 0 non-aeolian, 1 sand sheet/interdune, 2 barchan, 3 transverse, 4 linear, 5 star,
# 6 dome, 7 parabolic, 8 nebkha, 9 reticulate (configs/classes.yml).
REGIONS = {
    "namib": Region("namib", 32733, (420000.0, 7330000.0), 200.0,
                    (0.8, 1.0, 1.0, 1.5, 3.0, 2.0, 0.4, 0.1, 0.2, 0.6)),
    "atacama": Region("atacama", 32719, (360000.0, 7420000.0), 160.0,
                      (3.0, 2.0, 2.5, 1.0, 0.3, 0.2, 0.6, 0.2, 0.4, 0.2)),
    "mojave": Region("mojave", 32611, (590000.0, 3890000.0), 250.0,
                     (2.5, 2.0, 0.5, 1.0, 0.5, 0.8, 1.0, 1.0, 2.0, 0.3)),
    "qaidam": Region("qaidam", 32646, (560000.0, 4140000.0), 300.0,
                     (1.5, 1.0, 2.0, 2.0, 0.8, 0.8, 0.5, 0.3, 0.8, 2.0)),
    "yilgarn": Region("yilgarn", 32750, (690000.0, 6700000.0), 110.0,
                      (2.0, 1.5, 0.2, 0.3, 2.5, 0.1, 0.3, 2.0, 1.0, 0.5)),
}


def _unit(v: np.ndarray, axis: int = -1) -> np.ndarray:
    return v / np.linalg.norm(v, axis=axis, keepdims=True)


def prototypes(seed: int = 1234) -> dict[str, np.ndarray]:
    """Class prototypes, region shifts and the relief/aspect directions (fixed by ``seed``)."""
    rng = np.random.default_rng(seed)
    sand = _unit(rng.normal(size=BANDS))
    rock = _unit(rng.normal(size=BANDS))
    protos = np.empty((NUM_CLASSES, BANDS))
    protos[0] = _unit(rock + 0.6 * _unit(rng.normal(size=BANDS)))
    for k in range(1, NUM_CLASSES):
        # every sand class = common sand signature + a smaller class-specific part
        protos[k] = _unit(sand + 0.55 * _unit(rng.normal(size=BANDS)))
    relief = _unit(rng.normal(size=BANDS))
    aspect = _unit(rng.normal(size=BANDS))
    shifts = {name: 0.35 * _unit(rng.normal(size=BANDS)) for name in REGIONS}
    return {"protos": protos, "relief": relief, "aspect": aspect, "shifts": shifts}


def class_map(region: Region, size: int, rng: np.random.Generator,
              patch_px: float = 20.0) -> np.ndarray:
    """Coherent landform patches: arg-max of smoothed noise fields biased by the mixture."""
    from scipy.ndimage import gaussian_filter  # here, not at import: --help stays quick

    w = np.asarray(region.mixture, dtype=np.float64)
    fields = np.stack([gaussian_filter(rng.normal(size=(size, size)), patch_px, mode="wrap")
                       for _ in range(NUM_CLASSES)])
    fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-12
    fields += 0.5 * np.log(w / w.sum())[:, None, None]
    return fields.argmax(axis=0).astype(np.uint8)


def _cells(u: np.ndarray, v: np.ndarray, spacing: float, rng: np.random.Generator,
           jitter: float = 0.25):
    """Local coordinates of each pixel relative to a jittered centre in its grid cell."""
    iu = np.floor(u / spacing).astype(np.int64)
    iv = np.floor(v / spacing).astype(np.int64)
    iu -= iu.min()
    iv -= iv.min()
    nu, nv = iu.max() + 1, iv.max() + 1
    ju = rng.uniform(-jitter, jitter, size=(nu, nv)) * spacing
    jv = rng.uniform(-jitter, jitter, size=(nu, nv)) * spacing
    scale = rng.uniform(0.75, 1.25, size=(nu, nv))
    cu = (iu + 0.5) * spacing + ju[iu, iv] + u.min() - (u.min() % spacing)
    cv = (iv + 0.5) * spacing + jv[iu, iv] + v.min() - (v.min() % spacing)
    return u - cu, v - cv, scale[iu, iv]


def textures(region: Region, size: int, rng: np.random.Generator):
    """Relief texture (H, W) per class and the dune-body mask per class (True = on a dune)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    th = np.deg2rad(region.wind_deg)
    u = xx * np.cos(th) + yy * np.sin(th)  # down-wind coordinate
    v = -xx * np.sin(th) + yy * np.cos(th)  # cross-wind coordinate
    tex = np.zeros((NUM_CLASSES, size, size))
    body = np.ones((NUM_CLASSES, size, size), dtype=bool)
    # 0 non-aeolian: rough, wind-independent
    from scipy.ndimage import gaussian_filter

    rough = gaussian_filter(rng.normal(size=(size, size)), 1.5)
    tex[0] = rough / (rough.std() + 1e-12) * 0.5
    # 1 sand sheet: low ripples
    tex[1] = 0.15 * np.sin(2 * np.pi * u / 4.0)
    # 2 barchan: crescents with horns down-wind, spacing ~22 px
    du, dv, s = _cells(u, v, 22.0, rng)
    r_out, r_in = 7.0 * s, 6.0 * s
    outer = du**2 + dv**2 < r_out**2
    inner = (du + 4.0 * s) ** 2 + dv**2 < r_in**2  # hollow on the lee side
    crescent = outer & ~inner
    tex[2] = np.where(crescent, 1.0 - np.sqrt(du**2 + dv**2) / r_out, -0.2)
    body[2] = crescent
    # 3 transverse: continuous sinuous ridges across the wind, asymmetric (saw-tooth) profile
    phase = (u / 11.0 + 0.35 * np.sin(2 * np.pi * v / 40.0)) % 1.0
    tex[3] = np.where(phase < 0.75, phase / 0.75, (1 - phase) / 0.25) * 2 - 1
    # 4 linear: long ridges parallel to the wind
    tex[4] = np.cos(2 * np.pi * (v + 2.0 * np.sin(2 * np.pi * u / 90.0)) / 15.0)
    # 5 star: sparse centres with 3-5 radiating arms, spacing ~40 px
    du, dv, s = _cells(u, v, 40.0, rng)
    r = np.sqrt(du**2 + dv**2)
    ang = np.arctan2(dv, du)
    arms = np.clip(np.cos(4 * ang), 0, None) ** 3
    star_r = 15.0 * s
    star = (r < star_r) & ((arms > 0.3) | (r < 4.0 * s))
    tex[5] = np.where(star, 1.2 * (1 - r / star_r), -0.2)
    body[5] = star
    # 6 dome: low round mounds, spacing ~18 px
    du, dv, s = _cells(u, v, 18.0, rng, jitter=0.3)
    r = np.sqrt(du**2 + dv**2)
    dome = r < 6.0 * s
    tex[6] = np.where(dome, 0.6 * np.cos(np.pi * r / (12.0 * s)), -0.1)
    body[6] = dome
    # 7 parabolic: U shapes with arms pointing up-wind (nose down-wind), spacing ~26 px
    du, dv, s = _cells(u, v, 26.0, rng)
    outer = du**2 + dv**2 < (9.0 * s) ** 2
    inner = (du - 3.0 * s) ** 2 + dv**2 < (8.0 * s) ** 2
    para = outer & ~inner
    tex[7] = np.where(para, 0.8, -0.25)
    body[7] = para
    # 8 nebkha: dense small hummocks, spacing ~6 px
    du, dv, s = _cells(u, v, 6.0, rng, jitter=0.35)
    r = np.sqrt(du**2 + dv**2)
    tex[8] = np.where(r < 2.0 * s, 0.7, -0.3)
    # 9 reticulate: two crossing ridge sets
    tex[9] = 0.5 * (np.cos(2 * np.pi * u / 13.0) + np.cos(2 * np.pi * (0.5 * u + v) / 17.0))
    return tex, body


def make_scene(region: Region, size: int = 512, seed: int = 0, noise: float = 0.33,
               border: int = 16, proto_seed: int = 1234):
    """One synthetic scene: (64, H, W) float32 features, (H, W) uint8 labels, nodata mask."""
    rng = np.random.default_rng([seed, sum(map(ord, region.name))])
    pp = prototypes(proto_seed)
    landform = class_map(region, size, rng)
    tex, body = textures(region, size, rng)
    rows, cols = np.indices((size, size))
    tex_px = np.take_along_axis(tex, landform[None].astype(np.int64), 0)[0]
    body_px = np.take_along_axis(body, landform[None].astype(np.int64), 0)[0]
    labels = landform.copy()  # dune-field level labels, as in field-scale dune-type maps
    del body_px
    th = np.deg2rad(region.wind_deg)
    gy, gx = np.gradient(tex_px)
    slope_dw = gx * np.cos(th) + gy * np.sin(th)  # lee/stoss asymmetry
    white = rng.normal(size=(BANDS, size, size)).astype(np.float32)
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(white, sigma=(0, 2.0, 2.0))
    smooth /= smooth.std() + 1e-12
    eps = (0.6 * white + 0.8 * smooth) * noise
    feat = (pp["protos"][labels].astype(np.float32).transpose(2, 0, 1)
            + pp["shifts"][region.name][:, None, None].astype(np.float32)
            + 0.45 * tex_px[None].astype(np.float32) * pp["relief"][:, None, None]
            .astype(np.float32)
            + 0.6 * slope_dw[None].astype(np.float32) * pp["aspect"][:, None, None]
            .astype(np.float32)
            + eps)
    feat /= np.linalg.norm(feat, axis=0, keepdims=True)
    # irregular nodata clip: a margin plus a cut corner, like a region export
    nodata = ((rows < border) | (cols < border) | (rows >= size - border)
              | (cols >= size - border) | (rows + cols < size // 5)
              | (rows - cols > size * 0.7))
    feat[:, nodata] = NODATA
    labels[nodata] = LABEL_NODATA
    return feat.astype(np.float32), labels, nodata


def write_scene(out_dir: Path, region: Region, size: int, seed: int, noise: float,
                suffix: str = "") -> tuple[Path, Path]:
    feat, labels, _ = make_scene(region, size, seed, noise)
    transform = from_origin(region.origin[0], region.origin[1], PIXEL_M, PIXEL_M)
    crs = CRS.from_epsg(region.epsg)
    img = out_dir / f"{region.name}{suffix}_embedding.tif"
    lab = out_dir / f"{region.name}{suffix}_labels.tif"
    write_geotiff(img, feat, crs=crs, transform=transform, nodata=NODATA,
                  band_descriptions=[f"A{i:02d}" for i in range(BANDS)])
    from dune_vlm.utils.config import class_colors

    colors = {k: (*c, 255) for k, c in class_colors().items()}
    write_geotiff(lab, labels, crs=crs, transform=transform, nodata=LABEL_NODATA,
                  colormap=colors)
    return img, lab


def generate_dataset(out_root: str | Path, size: int = 512, tile: int = 64, seed: int = 0,
                     noise: float = 0.33, regions=tuple(REGIONS), val_frac: float = 0.15,
                     test_frac: float = 0.15, map_region: str | None = "namib",
                     force: bool = False, progress: bool = True) -> dict:
    """Write scenes (GeoTIFF) and the tile layout under ``out_root``; reuse if already there.

    ``map_region`` adds one more, independently drawn scene of that region
    (``scenes/<region>_map_*.tif``) that is never tiled, for the large-scale mapping demo.
    """
    from dune_vlm.prepare_tiles import prepare_tiles

    out_root = Path(out_root)
    params = dict(size=size, tile=tile, seed=seed, noise=noise, regions=list(regions),
                  val_frac=val_frac, test_frac=test_frac, map_region=map_region, version=1)
    manifest = out_root / "manifest.json"
    if manifest.is_file() and not force:
        old = json.loads(manifest.read_text(encoding="utf-8"))
        if old.get("params") == params:
            return old
    scenes = out_root / "scenes"
    scenes.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in regions:
        if name not in REGIONS:
            raise ValueError(f"unknown region {name!r}; choose from {sorted(REGIONS)}")
        img, lab = write_scene(scenes, REGIONS[name], size, seed, noise)
        counts[name] = prepare_tiles(
            img, out_root, label_tif=lab, tile_size=tile, stride=tile, region=name,
            split="random", val_frac=val_frac, test_frac=test_frac, seed=seed,
            max_nodata=0.5, progress=progress, fill_value=0.0)
    info = {"params": params, "tiles": counts}
    if map_region:
        img, lab = write_scene(scenes, REGIONS[map_region], size, seed + 1000, noise,
                               suffix="_map")
        info["map_scene"] = {"image": str(img.relative_to(out_root)),
                             "labels": str(lab.relative_to(out_root))}
    atomic_write_json(manifest, info)
    return info


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description="Generate synthetic 64-band satellite-embedding scenes of five Mars-analog "
                    "dune regions (GeoTIFF + label GeoTIFF) and cut them into the "
                    "img_dir/ann_dir tile layout.")
    p.add_argument("--out", default="datasets/dune_vlm/synthetic",
                   help="output folder (default: %(default)s)")
    p.add_argument("--size", type=int, default=512, help="scene side in pixels (default 512)")
    p.add_argument("--tile", type=int, default=64, help="tile side, a multiple of 32 (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.33, help="per-band noise level")
    p.add_argument("--regions", nargs="+", default=list(REGIONS), choices=list(REGIONS))
    p.add_argument("--force", action="store_true", help="regenerate even if present")
    args = p.parse_args(argv)
    if args.tile % 32 or args.tile <= 0 or args.size < args.tile:
        p.error("--tile must be a positive multiple of 32 and not larger than --size")
    info = generate_dataset(args.out, args.size, args.tile, args.seed, args.noise,
                            tuple(args.regions), force=args.force)
    print(json.dumps(info["tiles"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
