"""Score a predicted crater catalogue against a true one with the DeepMoon criteria.

    python -m crater_resunet.evaluate_catalog PRED.csv TRUTH.csv [--radius-km 1737.4]

A predicted crater (centre, radius r1) matches a true one (r2) when
``(dx^2 + dy^2) / min(r1, r2)^2 < 1.8`` and ``|r1 - r2| / min(r1, r2) < 1.0`` (Silburt et al.,
Icarus 2019), each true crater matched at most once, predictions taken in order of decreasing
``confidence`` (file order without that column), each to the nearest free true crater that
passes. Units: kilometres on the body when both files have ``lon``, ``lat`` and
``diameter_km`` (great-circle distance on a sphere of ``--radius-km``, the Moon by default),
else pixels from ``x``, ``y``, ``diameter`` (pycda's ``long``, ``lat`` = pixel columns are read
as ``x``, ``y``). With an ``image`` column in both files craters are matched per image.
Prints recall, precision, F1 and the errors of the matches (relative diameter error, position
error in the catalogue's unit and in units of the true radius).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.errors import UserError

POSITION_LIMIT = 1.8   # (dx^2 + dy^2) / min(r)^2
RADIUS_LIMIT = 1.0     # |r1 - r2| / min(r)
MOON_RADIUS_KM = 1737.4
PIXEL_ALIASES = {"x": ("x", "long"), "y": ("y", "lat"), "diameter": ("diameter",)}


def read_catalogue(path: str | Path, units: str = "auto") -> dict:
    """``{"units": "km"|"px", "image": [...], "a": lon|x, "b": lat|y, "d": diameter,
    "conf": confidence or None}`` from a CSV file; errors name the file."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, skipinitialspace=True)
            rows = list(reader)
            fields = [f.strip() for f in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read the catalogue ({exc})") from None
    geo = {"lon", "lat", "diameter_km"} <= set(fields)
    if units == "km" and not geo:
        raise UserError(f"{path}: --units km needs columns lon, lat, diameter_km")
    use_km = geo if units == "auto" else units == "km"
    if use_km:
        cols = ("lon", "lat", "diameter_km")
    else:
        cols = tuple(next((c for c in PIXEL_ALIASES[k] if c in fields), None)
                     for k in ("x", "y", "diameter"))
        if None in cols:
            raise UserError(f"{path}: expected columns x, y, diameter (pixels) or lon, lat, "
                            f"diameter_km; found {', '.join(fields) or 'none'}")
    out = {"units": "km" if use_km else "px", "path": path}
    try:
        vals = np.array([[float(r[c]) for c in cols] for r in rows], dtype=np.float64)
        conf = (np.array([float(r["confidence"]) for r in rows])
                if "confidence" in fields else None)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: non-numeric value in {', '.join(cols)} ({exc})") from None
    vals = vals.reshape(-1, 3)
    if not np.all(np.isfinite(vals)) or np.any(vals[:, 2] <= 0):
        raise UserError(f"{path}: every crater needs finite coordinates and a diameter > 0")
    out.update(a=vals[:, 0], b=vals[:, 1], d=vals[:, 2], conf=conf,
               image=[r.get("image", "") for r in rows] if "image" in fields else None)
    return out


def distances(pred: dict, i: int, truth: dict, js: np.ndarray, radius_km: float) -> np.ndarray:
    """Distance from prediction ``i`` to the true craters ``js`` (km on the sphere, or px)."""
    if pred["units"] == "px":
        return np.hypot(truth["a"][js] - pred["a"][i], truth["b"][js] - pred["b"][i])
    lon1, lat1 = np.radians(pred["a"][i]), np.radians(pred["b"][i])
    lon2, lat2 = np.radians(truth["a"][js]), np.radians(truth["b"][js])
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * \
        np.sin((lon2 - lon1) / 2) ** 2
    return 2 * radius_km * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


def match(pred: dict, truth: dict, radius_km: float = MOON_RADIUS_KM) -> list[tuple]:
    """[(pred index, truth index, distance)] under the DeepMoon criteria."""
    n = len(pred["d"])
    order = np.argsort(-pred["conf"], kind="stable") if pred["conf"] is not None \
        else np.arange(n)
    taken = np.zeros(len(truth["d"]), dtype=bool)
    same = None
    if pred["image"] is not None and truth["image"] is not None:
        same = np.asarray(truth["image"], dtype=object)
    out = []
    for i in order:
        js = np.flatnonzero(~taken)
        if same is not None:
            js = js[same[js] == pred["image"][i]]
        if len(js) == 0:
            continue
        dist = distances(pred, i, truth, js, radius_km)
        r1, r2 = pred["d"][i] / 2, truth["d"][js] / 2
        rmin = np.minimum(r1, r2)
        ok = (dist**2 / rmin**2 < POSITION_LIMIT) & (np.abs(r1 - r2) / rmin < RADIUS_LIMIT)
        if ok.any():
            k = int(np.argmin(np.where(ok, dist / rmin, np.inf)))
            taken[js[k]] = True
            out.append((int(i), int(js[k]), float(dist[k])))
    return out


def score(pred: dict, truth: dict, radius_km: float = MOON_RADIUS_KM) -> dict:
    """Recall, precision, F1 and the errors of the matched craters."""
    if pred["units"] != truth["units"]:
        raise UserError(f"{pred['path']} is in {pred['units']}, {truth['path']} in "
                        f"{truth['units']}: both catalogues need the same units")
    m = match(pred, truth, radius_km)
    tp, n_pred, n_true = len(m), len(pred["d"]), len(truth["d"])
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    res = {"units": pred["units"], "predicted": n_pred, "true": n_true, "matched": tp,
           "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    if m:
        i, j, dist = (np.array(v) for v in zip(*m))
        res["diameter_rel_error_mean"] = float(np.mean(np.abs(pred["d"][i] - truth["d"][j])
                                                       / truth["d"][j]))
        res["position_error_mean"] = float(np.mean(dist))
        res["position_error_rel_radius_mean"] = float(np.mean(dist / (truth["d"][j] / 2)))
    return res


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="craters-evaluate-catalog",
        description="Recall, precision, F1 and match errors of a crater catalogue against a "
                    "true one (DeepMoon criteria; km on the body for lon/lat/diameter_km "
                    "catalogues, pixels otherwise).")
    parser.add_argument("pred", type=Path, help="predicted catalogue CSV (craters.csv)")
    parser.add_argument("truth", type=Path, help="true catalogue CSV")
    parser.add_argument("--units", choices=["auto", "km", "px"], default="auto",
                        help="auto: km when both have lon, lat, diameter_km (default)")
    parser.add_argument("--radius-km", type=float, default=MOON_RADIUS_KM,
                        help="body radius for km distances (default: the Moon, 1737.4)")
    parser.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    from shared.runs import declare_paths

    declare_paths(parser, inputs=["pred", "truth"], outputs=["json"])
    args = parser.parse_args(argv)
    res = score(read_catalogue(args.pred, args.units), read_catalogue(args.truth, args.units),
                args.radius_km)
    unit = res["units"]
    line = (f"{res['matched']} of {res['true']} true craters matched by {res['predicted']} "
            f"predicted: recall {res['recall']:.4f} precision {res['precision']:.4f} F1 "
            f"{res['f1']:.4f}")
    if res["matched"]:
        line += (f"; matches: diameter error {100 * res['diameter_rel_error_mean']:.1f} %, "
                 f"position error {res['position_error_mean']:.3g} {unit} "
                 f"({res['position_error_rel_radius_mean']:.2f} radii)")
    print(line)
    if args.json:
        from shared.atomic import atomic_write_json

        atomic_write_json(args.json, res)
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
