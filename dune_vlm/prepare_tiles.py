"""Cut a 64-band GeoTIFF (e.g. a Google Satellite Embedding export) into training tiles.

Input: the exported embedding GeoTIFF and labels on the same grid, either a label raster
(``--label_tif``, uint8 class indexes, 255 = ignore) or vector polygons (``--label_vector``, a
GeoJSON whose features carry the class index or class name in ``--label_field``), rasterised
window by window. Output: ``<out>/img_dir/<split>/<stem>.npy`` (float32, (bands, T, T)) and
``<out>/ann_dir/<split>/<stem>.png`` plus ``<out>/regions.json`` (stem -> region).

The raster is read one window at a time (never the whole scene). Tiles with more than
``--max_nodata`` of nodata are skipped; remaining nodata pixels get label 255 and image value
``--fill_value``. Splits: ``--split random`` (per tile, seeded, ``--val_frac``/``--test_frac``) or
``--split train|val|test`` to put the whole scene (region) in one split for a region hold-out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from tqdm import tqdm

from shared.atomic import atomic_path, atomic_write_json
from shared.errors import UserError
from shared.rasters import RasterError, read_window
from shared.tiles import iter_windows

SPLIT_CHOICES = ("random", "train", "val", "test")


class TilingError(UserError):
    pass


def _open(path: Path):
    if not Path(path).is_file():
        raise TilingError(f"{path}: file not found")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise TilingError(f"{path}: not a readable raster ({exc})") from None


def nodata_mask(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """(H, W) True where any band is nodata or not finite."""
    bad = ~np.isfinite(block).all(axis=0) if block.dtype.kind == "f" else \
        np.zeros(block.shape[1:], bool)
    if nodata is not None and not np.isnan(nodata):
        bad |= (block == nodata).any(axis=0)
    return bad


def _load_vector(path: Path, field: str, class_names: list[str], dst_crs, src_crs: str | None):
    from rasterio.warp import transform_geom

    try:
        gj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TilingError(f"{path}: not a readable GeoJSON file ({exc})") from None
    feats = gj.get("features") if isinstance(gj, dict) else None
    if not feats:
        raise TilingError(f"{path}: no features found")
    crs = src_crs or (gj.get("crs", {}).get("properties", {}).get("name") if gj.get("crs")
                      else "EPSG:4326")
    shapes = []
    lookup = {n.lower(): i for i, n in enumerate(class_names)}
    for i, f in enumerate(feats):
        value = (f.get("properties") or {}).get(field)
        if isinstance(value, str) and value.lower() in lookup:
            value = lookup[value.lower()]
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise TilingError(f"{path}: feature {i} has no usable {field!r} "
                              f"(got {value!r}; give a class index or name)") from None
        if not (0 <= value < len(class_names) or value == 255):
            raise TilingError(f"{path}: feature {i} has class {value} outside "
                              f"0..{len(class_names) - 1}")
        geom = f.get("geometry")
        if geom is None:
            continue
        if crs and dst_crs is not None:
            geom = transform_geom(crs, dst_crs, geom)
        shapes.append((geom, value))
    return shapes


PREPARATION = "preparation.json"


def record_preparation(out_root: Path, region: str, params: dict) -> None:
    """One preparation per region and folder: a re-run with the same parameters resumes it
    (the same tiles are rewritten), other parameters are refused, so that tiles of two
    preparations (e.g. two split seeds) are never mixed in one dataset."""
    path = out_root / PREPARATION
    try:
        done = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise TilingError(f"{path}: not valid JSON ({exc})") from None
    params = {k: ("nan" if isinstance(v, float) and v != v else v) for k, v in params.items()}
    params = json.loads(json.dumps(params))  # as stored (tuples to lists)
    old = done.get(region)
    if old is not None and old != params:
        diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {params.get(k)!r}" for k in diff)
        raise TilingError(f"{out_root}: region {region!r} was prepared there with other "
                          f"settings ({changes}); "
                          "use a new --out_root (tiles of two preparations must not mix)")
    if old is None:
        same = [r for r, p in done.items()
                if p.get("image") == params.get("image")
                and p.get("image_size") == params.get("image_size")]
        if same:
            raise TilingError(f"{out_root}: {params.get('image')} was already prepared there as "
                              f"region {same[0]!r}; a second region from the same image would "
                              "put the same windows in two splits (use a new --out_root)")
        stale = list((out_root / "img_dir").glob(f"*/{region}_*.npy"))
        if stale:
            raise TilingError(f"{out_root}: holds tiles of region {region!r} from an unrecorded "
                              f"preparation (e.g. {stale[0]}); use a new --out_root")
        done[region] = params
        atomic_write_json(path, done)


def tile_labels(lab_src, shapes, transform, w, tile_size: int, vector_fill: int,
                bad: np.ndarray, num_classes: int, source) -> np.ndarray:
    """The (T, T) uint8 labels of window ``w``: read from the label raster or rasterised from
    the polygons; nodata -> 255; values outside 0..C-1 and 255 are an error naming ``source``."""
    if lab_src is not None:
        lab = lab_src.read(1, window=w)
    else:
        from rasterio.features import rasterize

        lab = rasterize(shapes, out_shape=(tile_size, tile_size), transform=transform,
                        fill=vector_fill, dtype="uint8") if shapes else \
            np.full((tile_size, tile_size), vector_fill, np.uint8)
    lab = lab.astype(np.uint8)
    if lab_src is not None and lab_src.nodata is not None:
        lab[lab == lab_src.nodata] = 255
    lab[bad] = 255
    invalid = (lab >= num_classes) & (lab != 255)
    if invalid.any():
        raise TilingError(f"{source}: label values {np.unique(lab[invalid]).tolist()} outside "
                          f"0..{num_classes - 1} and 255 in window {w}")
    return lab


def open_labels(src, label_tif, label_vector, label_field: str, vector_crs):
    """(label raster on the image grid, or None; polygons, or None), checked."""
    if label_tif is None:
        from dune_vlm.utils.config import class_names

        return None, _load_vector(Path(label_vector), label_field, class_names(), src.crs,
                                  vector_crs)
    lab_src = _open(Path(label_tif))
    if np.dtype(lab_src.dtypes[0]).kind not in "iu":
        lab_src.close()
        raise TilingError(f"{label_tif}: label raster has {lab_src.dtypes[0]} values; class "
                          "indexes must be an integer raster (uint8, 255 = ignore), they are "
                          "never truncated from floats")
    if (lab_src.width, lab_src.height) != (src.width, src.height) or \
            lab_src.transform != src.transform or lab_src.crs != src.crs:
        lab_src.close()
        raise TilingError(f"{label_tif}: label raster is not on the image grid (size, CRS and "
                          "transform must match; reproject it first)")
    return lab_src, None


def prepare_tiles(
    image_tif, out_root, *, label_tif=None, label_vector=None, label_field: str = "class",
    vector_crs: str | None = None, vector_fill: int = 255, tile_size: int = 512,
    stride: int | None = None, region: str | None = None, split: str = "random",
    val_frac: float = 0.15, test_frac: float = 0.15, seed: int = 0, max_nodata: float = 0.5,
    bands: int = 64, nodata: float | None = None, fill_value: float = 0.0,
    num_classes: int = 10, progress: bool = True,
) -> dict[str, int]:
    """Tile one scene; returns the number of tiles written per split (and skipped)."""
    image_tif, out_root = Path(image_tif), Path(out_root)
    if (label_tif is None) == (label_vector is None):
        raise TilingError("give exactly one of a label raster or a label vector file")
    if split not in SPLIT_CHOICES:
        raise TilingError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    if not 0 <= val_frac + test_frac < 1:
        raise TilingError("val_frac + test_frac must be in [0, 1)")
    if tile_size <= 0 or tile_size % 32:
        raise TilingError(f"tile size must be a positive multiple of 32, got {tile_size}")
    stride = stride or tile_size
    region = region or image_tif.stem
    counts = {"train": 0, "val": 0, "test": 0, "skipped": 0}
    stems: dict[str, str] = {}
    with _open(image_tif) as src:
        if src.count != bands:
            raise TilingError(f"{image_tif}: expected {bands} bands, found {src.count}")
        nd = nodata if nodata is not None else src.nodata
        lab_src, shapes = open_labels(src, label_tif, label_vector, label_field, vector_crs)
        record_preparation(out_root, region, {
            "image": image_tif.name, "image_size": [src.width, src.height],
            "labels": Path(label_tif or label_vector).name, "label_field": label_field,
            "vector_fill": vector_fill, "tile_size": tile_size, "stride": stride,
            "split": split, "val_frac": val_frac, "test_frac": test_frac, "seed": seed,
            "max_nodata": max_nodata, "bands": bands, "nodata": nd, "fill_value": fill_value,
            "num_classes": num_classes})
        rng = np.random.default_rng([seed, sum(map(ord, region))])
        windows = list(iter_windows(src.height, src.width, tile_size, stride, edge="drop"))
        if not windows:
            raise TilingError(f"{image_tif}: raster {src.width}x{src.height} is smaller than "
                              f"one tile of {tile_size}")
        try:
            for win in tqdm(windows, desc=f"tiles {region}", unit="tile", disable=not progress):
                draw = rng.random()
                w = win.as_rasterio()
                try:
                    img = read_window(src, w)
                except RasterError as exc:
                    raise TilingError(str(exc)) from None
                bad = nodata_mask(img, nd)
                if bad.mean() > max_nodata:
                    counts["skipped"] += 1
                    continue
                lab = tile_labels(lab_src, shapes, src.window_transform(w), w, tile_size,
                                  vector_fill, bad, num_classes, label_tif or label_vector)
                img = img.astype(np.float32)
                img[:, bad] = fill_value
                if split == "random":
                    sp = "test" if draw < test_frac else ("val" if draw < test_frac + val_frac
                                                          else "train")
                else:
                    sp = split
                stem = f"{region}_{win.row:06d}_{win.col:06d}"
                with atomic_path(out_root / "img_dir" / sp / f"{stem}.npy") as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, img)
                with atomic_path(out_root / "ann_dir" / sp / f"{stem}.png") as tmp:
                    Image.fromarray(lab).save(tmp, format="PNG")
                stems[stem] = region
                counts[sp] += 1
        finally:
            if lab_src is not None:
                lab_src.close()
    reg_path = out_root / "regions.json"
    mapping = json.loads(reg_path.read_text(encoding="utf-8")) if reg_path.is_file() else {}
    mapping.update(stems)
    atomic_write_json(reg_path, dict(sorted(mapping.items())))
    return counts


def main(argv=None) -> int:
    from shared.cli import finish_parser, progress_enabled

    p = argparse.ArgumentParser(
        prog="dunes-prepare-tiles",
        description="Cut a 64-band embedding GeoTIFF plus labels (raster or GeoJSON polygons) "
                    "into img_dir/<split>/*.npy and ann_dir/<split>/*.png tiles, window by "
                    "window.")
    p.add_argument("--image_tif", required=True, help="exported 64-band GeoTIFF (required)")
    lab = p.add_mutually_exclusive_group(required=True)
    lab.add_argument("--label_tif", help="label raster on the same grid (uint8, 255 = ignore)")
    lab.add_argument("--label_vector", help="GeoJSON polygons with a class index/name property")
    p.add_argument("--label_field", default="class", help="property holding the class")
    p.add_argument("--vector_crs", help="CRS of the GeoJSON if not EPSG:4326 (e.g. EPSG:32733)")
    p.add_argument("--vector_fill", type=int, default=255,
                   help="label of pixels outside every polygon (default 255 = ignore)")
    p.add_argument("--out_root", required=True, help="dataset root to write into (required)")
    p.add_argument("--tile_size", type=int, default=512, help="tile side in pixels")
    p.add_argument("--stride", type=int, default=None, help="default: tile size")
    p.add_argument("--region", help="region name recorded for each tile (default: file stem)")
    p.add_argument("--split", default="random", choices=SPLIT_CHOICES,
                   help="'random' per tile, or put the whole scene in one split")
    p.add_argument("--val_frac", type=float, default=0.15, help="share of tiles for validation")
    p.add_argument("--test_frac", type=float, default=0.15, help="share of tiles for the test")
    p.add_argument("--seed", type=int, default=0, help="seed of the random split")
    p.add_argument("--max_nodata", type=float, default=0.5,
                   help="skip tiles with a larger nodata fraction (default 0.5)")
    p.add_argument("--bands", type=int, default=64, help="bands expected in the image")
    p.add_argument("--nodata", type=float, help="input nodata value (default: from the file)")
    p.add_argument("--no_progress", action="store_true",
                   help="no progress bars (they are off anyway when the output is not a "
                        "terminal)")
    args = finish_parser(p).parse_args(argv)
    from shared.runs import check_not_inputs, cli_main

    def run(_argv):
        check_not_inputs([args.out_root], [args.image_tif, args.label_tif, args.label_vector])
        counts = prepare_tiles(
            args.image_tif, args.out_root, label_tif=args.label_tif,
            label_vector=args.label_vector, label_field=args.label_field,
            vector_crs=args.vector_crs, vector_fill=args.vector_fill, tile_size=args.tile_size,
            stride=args.stride, region=args.region, split=args.split, val_frac=args.val_frac,
            test_frac=args.test_frac, seed=args.seed, max_nodata=args.max_nodata,
            bands=args.bands, nodata=args.nodata, progress=progress_enabled(args.no_progress))
        print(json.dumps(counts))
        return 0

    return cli_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
