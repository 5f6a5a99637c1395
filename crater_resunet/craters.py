"""Craters, not pixels: a crater catalogue from a probability map.

    from crater_resunet.craters import extract_craters, crater_nms
    cat = extract_craters(prob, valid)          # dict of arrays, one entry per crater

Steps (``extract_craters``):

1. invalid pixels (``valid`` False, NaN) take no part: the map is smoothed by a normalised
   Gaussian (``sigma`` px; the weighted mean of the valid neighbours), so an under-trained
   model's alternating columns (odd columns near 0.49, even ones above 0.5) become one solid
   blob instead of 1-px stripes;
2. threshold (``threshold``, 0.5), a binary closing with a disc of radius ``closing`` px and
   hole filling (a ring-shaped prediction of a rim becomes its disc); invalid pixels are 0;
3. one crater per connected blob (``skimage.measure.regionprops``, 8-connectivity): centre =
   the blob's centroid, diameter = the **equivalent-circle diameter** 2 sqrt(area / pi) (not a
   circle fit), ``width``/``height`` = the blob's bounding box, ``confidence`` = mean
   probability inside the blob (of the unsmoothed map), ``peak`` = its maximum, ``area``;
4. ``nodata`` = 1 when the crater's circle grown by one pixel reaches an invalid pixel (or
   leaves the map when ``edge_is_nodata``): its rim may be cut, so its size and position are
   unreliable (flagged; ``drop_nodata`` removes them);
5. a crater NMS (:func:`crater_nms`) merges craters that are the same crater by the DeepMoon
   criteria (Silburt et al. 2019): ``(dx^2 + dy^2) / min(r)^2 < 1.8`` and
   ``|r1 - r2| / min(r) < 1.0``; the most confident one is kept.

Positions are in pixels with pixel edges at integers (the centre of the first pixel is 0.5).
The YOLO box of a crater (:func:`crater_boxes`) is the circle's bounding square, centre +- d/2.

The catalogue of a run is written here too: rows with lon/lat for georeferenced scenes
(:func:`catalogue_rows`), ``craters.csv`` (:func:`write_catalogue_csv`), ``craters.gpkg``
(:func:`write_catalogue_gpkg`) and YOLO detection files (:func:`yolo_detections`).
"""

from __future__ import annotations

import numpy as np

# Columns of a crater table (every value an array of the same length).
FIELDS = ("x", "y", "diameter", "width", "height", "confidence", "peak", "area", "nodata",
          "scale")
NMS_POSITION = 1.8  # (dx^2 + dy^2) / min(r)^2, DeepMoon
NMS_RADIUS = 1.0    # |r1 - r2| / min(r), DeepMoon


def empty() -> dict:
    """A crater table with no rows."""
    return {k: np.zeros(0, np.float64) for k in FIELDS}


def concat(tables: list[dict]) -> dict:
    """Rows of several crater tables, in order."""
    tables = [t for t in tables if len(t["x"])]
    if not tables:
        return empty()
    return {k: np.concatenate([np.asarray(t[k], np.float64) for t in tables]) for k in FIELDS}


def take(table: dict, idx) -> dict:
    """The rows ``idx`` (indices or a boolean mask) of a crater table."""
    return {k: np.asarray(v)[idx] for k, v in table.items()}


def smooth_probability(prob: np.ndarray, valid: np.ndarray | None = None,
                       sigma: float = 1.0) -> np.ndarray:
    """Normalised Gaussian smoothing: the weighted mean of the valid neighbours (0 where no
    valid pixel is near). ``sigma <= 0`` only zeroes invalid pixels."""
    from scipy.ndimage import gaussian_filter

    prob = np.asarray(prob, np.float32)
    ok = np.isfinite(prob)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    p = np.where(ok, prob, 0.0).astype(np.float32)
    if sigma <= 0:
        return p
    num = gaussian_filter(p, sigma, mode="nearest", truncate=3.0)
    den = gaussian_filter(ok.astype(np.float32), sigma, mode="nearest", truncate=3.0)
    out = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0).astype(np.float32)
    return np.where(ok, out, 0.0)


def crater_mask(prob: np.ndarray, valid: np.ndarray | None = None, threshold: float = 0.5,
                sigma: float = 1.0, closing: int = 1, fill_holes: bool = True) -> np.ndarray:
    """The cleaned binary crater mask (bool): smoothed, thresholded, closed, holes filled."""
    from scipy import ndimage

    sm = smooth_probability(prob, valid, sigma)
    binary = sm >= threshold
    if closing > 0 and binary.any():
        r = int(closing)
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        disc = xx ** 2 + yy ** 2 <= r * r
        # pad so the closing does not erode blobs at the map's border
        padded = np.pad(binary, r, mode="edge")
        binary = ndimage.binary_closing(padded, structure=disc)[r:-r, r:-r]
    if fill_holes and binary.any():
        binary = ndimage.binary_fill_holes(binary)
    if valid is not None:
        binary &= np.asarray(valid, bool)
    return binary


def extract_craters(prob: np.ndarray, valid: np.ndarray | None = None, *,
                    threshold: float = 0.5, sigma: float = 1.0, closing: int = 1,
                    min_area: float = 4.0, min_diameter: float = 0.0,
                    nms: bool = True, drop_nodata: bool = False, edge_is_nodata: bool = False,
                    return_mask: bool = False):
    """Craters of a (H, W) probability map (see the module docstring).

    ``valid``: bool (H, W), False where the input was nodata (NaN in ``prob`` counts as
    invalid too). Returns a crater table (dict of float arrays, :data:`FIELDS`; ``scale`` is 1)
    sorted by decreasing confidence, plus ``top`` (the blob's first row; dropped by
    :func:`concat`); with ``return_mask`` also the cleaned binary mask.
    """
    from skimage.measure import label, regionprops

    prob = np.asarray(prob, np.float32)
    if prob.ndim != 2:
        raise ValueError(f"expected a (H, W) probability map, got shape {prob.shape}")
    ok = np.isfinite(prob)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    mask = crater_mask(prob, ok, threshold, sigma, closing)
    raw = np.where(ok, prob, 0.0)
    lab = label(mask, connectivity=2)
    rows = []
    for reg in regionprops(lab, intensity_image=raw):
        area = float(reg.area)
        if area == 0 or area < min_area:
            continue
        d = 2.0 * np.sqrt(area / np.pi)
        if d < min_diameter:
            continue
        r0, c0, r1, c1 = reg.bbox
        cy, cx = reg.centroid
        vals = raw[reg.slice][reg.image]
        rows.append((cx + 0.5, cy + 0.5, d, c1 - c0, r1 - r0, float(vals.mean()),
                     float(vals.max()), area, r0))
    if not rows:
        table = empty()
        table["top"] = np.zeros(0)
    else:
        arr = np.asarray(rows, np.float64)
        table = {k: arr[:, i] for i, k in enumerate(FIELDS[:8])}
        table["nodata"] = touches_invalid(table, ok, edge_is_nodata).astype(np.float64)
        table["scale"] = np.ones(len(arr))
        table["top"] = arr[:, 8]  # first row of the blob (not a catalogue column)
        table = take(table, np.argsort(-table["confidence"], kind="stable"))
        if nms:
            table = crater_nms(table)
        if drop_nodata:
            table = take(table, table["nodata"] == 0)
    return (table, mask) if return_mask else table


def touches_invalid(table: dict, valid: np.ndarray, edge_is_nodata: bool = False,
                    grow: float = 1.0) -> np.ndarray:
    """Bool per crater: its circle, radius + ``grow`` px, covers an invalid pixel (or, with
    ``edge_is_nodata``, reaches past the map's border)."""
    valid = np.asarray(valid, bool)
    h, w = valid.shape
    out = np.zeros(len(table["x"]), bool)
    if valid.all() and not edge_is_nodata:
        return out
    for i, (x, y, d) in enumerate(zip(table["x"], table["y"], table["diameter"])):
        r = d / 2 + grow
        c0, c1 = int(np.floor(x - r)), int(np.ceil(x + r))
        r0, r1 = int(np.floor(y - r)), int(np.ceil(y + r))
        if c0 < 0 or r0 < 0 or c1 > w or r1 > h:
            if edge_is_nodata:
                out[i] = True
                continue
        cc0, cc1, rr0, rr1 = max(c0, 0), min(c1, w), max(r0, 0), min(r1, h)
        if cc1 <= cc0 or rr1 <= rr0:
            continue
        yy, xx = np.mgrid[rr0:rr1, cc0:cc1]
        disc = (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= r * r
        out[i] = bool((disc & ~valid[rr0:rr1, cc0:cc1]).any())
    return out


def crater_nms(table: dict, position: float = NMS_POSITION, radius: float = NMS_RADIUS,
               order: str = "confidence") -> dict:
    """Merge duplicates: craters are visited by decreasing ``order`` (a column); one that is
    the same crater as an already kept one by the DeepMoon criteria
    (``dist^2 / min(r)^2 < position`` and ``|r1 - r2| / min(r) < radius``) is dropped.
    Returns the kept rows (sorted by decreasing ``order``)."""
    n = len(table["x"])
    if n < 2:
        return take(table, np.arange(n))
    idx = np.argsort(-np.asarray(table[order]), kind="stable")
    x, y = np.asarray(table["x"])[idx], np.asarray(table["y"])[idx]
    r = np.asarray(table["diameter"])[idx] / 2
    keep: list[int] = []
    kx, ky, kr = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        k = len(keep)
        if k:
            rmin = np.maximum(np.minimum(kr[:k], r[i]), 1e-9)
            d2 = (kx[:k] - x[i]) ** 2 + (ky[:k] - y[i]) ** 2
            same = (d2 / rmin ** 2 < position) & (np.abs(kr[:k] - r[i]) / rmin < radius)
            if same.any():
                continue
        kx[k], ky[k], kr[k] = x[i], y[i], r[i]
        keep.append(i)
    return take(table, idx[np.asarray(keep, int)])


def crater_boxes(table: dict) -> np.ndarray:
    """(N, 4) ``x1 y1 x2 y2``: each crater's circle's bounding square (centre +- d/2)."""
    x, y, r = (np.asarray(table[k], np.float64) for k in ("x", "y", "diameter"))
    r = r / 2
    return np.stack([x - r, y - r, x + r, y + r], axis=1).reshape(-1, 4)


def scaled(table: dict, scale: float, offset: tuple[float, float] = (0.0, 0.0)) -> dict:
    """A table found on a grid of ``scale`` model pixels per input pixel, in input pixels
    (``x / scale + offset``); the ``scale`` column records the grid's scale."""
    t = {k: np.asarray(v, np.float64).copy() for k, v in table.items()}
    for k in ("x", "y", "diameter", "width", "height"):
        t[k] = t[k] / scale
    t["x"] += offset[0]
    t["y"] += offset[1]
    t["area"] = t["area"] / scale ** 2
    t["scale"] = np.full(len(t["x"]), float(scale))
    return t


def to_rows(table: dict, image: str) -> list[dict]:
    """Catalogue rows (dicts) of a crater table."""
    out = []
    for i in range(len(table["x"])):
        row = {"image": image}
        for k in FIELDS:
            v = float(table[k][i])
            row[k] = int(v) if k == "nodata" else v
        out.append(row)
    return out


# ------------------------------------------------------------------------ the catalogue
PIXEL_COLUMNS = ("image", "x", "y", "diameter", "width", "height", "confidence")
GEO_COLUMNS = ("lon", "lat", "diameter_km")
EXTRA_COLUMNS = ("peak", "scale", "nodata")
CATALOGUE_COLUMNS = PIXEL_COLUMNS + GEO_COLUMNS + EXTRA_COLUMNS


def catalogue_rows(scene, name: str, table: dict) -> list[dict]:
    """One row per crater of a table in input pixels: centre (x = column, y = row, pixel
    edges at integers), diameter, width, height, confidence, peak, scale, nodata;
    ``lon``/``lat``/``diameter_km`` when the scene (a ``shared.rasters.Scene``) is
    georeferenced."""
    rows = to_rows(table, name)
    if scene.georeferenced and rows:
        x = np.array([r["x"] for r in rows])
        y = np.array([r["y"] for r in rows])
        lon, lat = scene.pixel_to_lonlat(y - 0.5, x - 0.5)  # pixel-centre convention
        px_m = scene.pixel_size_m
        for i, r in enumerate(rows):
            r.update(lon=float(lon[i]), lat=float(lat[i]),
                     diameter_km=float(r["diameter"] * px_m / 1000.0) if px_m else None)
    return rows


def write_catalogue_csv(path, rows: list[dict]) -> None:
    """``craters.csv``: the pixel columns (and lon/lat/diameter_km when any row has them)."""
    import csv
    import io

    from shared.atomic import atomic_write_text

    geo = any("lon" in r for r in rows)
    cols = CATALOGUE_COLUMNS if geo else PIXEL_COLUMNS + EXTRA_COLUMNS
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else
                         (r[c] if c in ("image", "nodata") else f"{r[c]:.9f}"
                          if c in ("lon", "lat") else f"{r[c]:.6g}" if c == "scale"
                          else f"{r[c]:.4f}") for c in cols])
    atomic_write_text(path, buf.getvalue())


def layer_points(rows: list[dict], scene: dict) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of the crater centres of a layer: ``scene["points"]`` when computed
    already (:func:`portable_layer`), else ``scene["xy"]`` of the pixel centres."""
    if "points" in scene:
        return (np.asarray(scene["points"][0], np.float64),
                np.asarray(scene["points"][1], np.float64))
    xs = np.array([r["x"] for r in rows], np.float64)
    ys = np.array([r["y"] for r in rows], np.float64)
    return scene["xy"](ys - 0.5, xs - 0.5) if len(rows) else (xs, ys)


def portable_layer(layer: tuple[str, list[dict], dict]) -> dict:
    """A GeoPackage layer as JSON (name, CRS, the points' map coordinates), free of the open
    scene, so a worker can hand it to the client (``shared.cluster`` done markers); turned
    back into a layer by ``(d["name"], rows, d)``."""
    name, rows, scene = layer
    mx, my = layer_points(rows, scene)
    return {"name": name, "crs": scene["crs"],
            "points": [np.asarray(mx, np.float64).tolist(), np.asarray(my, np.float64).tolist()]}


def write_catalogue_gpkg(path, layers: list[tuple[str, list[dict], dict]]) -> None:
    """The catalogue as a GeoPackage, one point layer per georeferenced raster (named after
    it) in that raster's CRS, so QGIS places it on the body; columns as in the CSV. Each
    layer is ``(name, rows, {"xy": pixel -> map function, "crs": WKT})`` or, from
    :func:`portable_layer`, ``(name, rows, {"points": [xs, ys], "crs": WKT})``."""
    import pyogrio.raw
    import shapely

    from shared.atomic import atomic_path

    cols = [c for c in CATALOGUE_COLUMNS if c != "image"]
    with atomic_path(path, suffix=".gpkg") as tmp:
        for k, (layer, rows, scene) in enumerate(layers):
            mx, my = layer_points(rows, scene)
            geoms = shapely.to_wkb(shapely.points(np.asarray(mx), np.asarray(my)))
            data = [np.array([r["image"] for r in rows], dtype=object)] + [
                np.array([np.nan if r.get(c) is None else r[c] for r in rows], np.float64)
                for c in cols]
            pyogrio.raw.write(str(tmp), geometry=np.asarray(geoms, dtype=object),
                              field_data=data, fields=["image", *cols], crs=scene["crs"],
                              geometry_type="Point", driver="GPKG", layer=layer,
                              append=k > 0)


def yolo_detections(boxes: np.ndarray, confs: np.ndarray, width: int, height: int) -> str:
    """YOLO detection lines ``0 xc yc w h confidence`` (normalised) of pixel boxes."""
    lines = []
    for (x1, y1, x2, y2), c in zip(boxes, confs):
        lines.append(f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f} {c:.4f}\n")
    return "".join(lines)


def truth_boxes(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float pixel boxes ``x1 y1 x2 y2`` of YOLO labels."""
    if len(labels) == 0:
        return np.zeros((0, 4))
    xc, yc = labels[:, 1] * width, labels[:, 2] * height
    bw, bh = labels[:, 3] * width, labels[:, 4] * height
    return np.stack([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], axis=1)
