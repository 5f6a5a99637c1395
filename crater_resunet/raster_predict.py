"""Crater prediction on georeferenced rasters of any bit depth and size, in bounded memory.

A raster (GeoTIFF/COG, JP2, PDS .IMG, ISIS .cub, ...; 8/16-bit or float) is read through
``shared.rasters.open_scene``: windowed reads, nodata/NaN as invalid, one per-image percentile
stretch to 8 bits measured on a decimated overview. The scene is optionally resampled to the
model's training scale (``scale`` = model pixels per input pixel, e.g. from
``--target-resolution`` / the scene's pixel size). ``shared.engine`` predicts overlapping
model-size windows once each and writes the averaged probability (and the thresholded mask) to
GeoTIFF as soon as no later window touches a row, so memory holds one window row of the
output, never the scene. Craters are then found in overlapping strips of the written
probability (a blob belongs to the strip that holds its top row), and the catalogue
(:mod:`crater_resunet.craters`) gets pixel columns and, for georeferenced scenes, ``lon``,
``lat``, ``diameter_km``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GDAL_CACHE_MB = 64  # GDAL's block cache defaults to 5 % of RAM; bounded here
MASK_NODATA = 255
MASK_CLASSES = {0: "background", 1: "crater"}
MASK_COLOURS = {0: (0, 0, 0), 1: (255, 64, 32)}
OVERLAY_MAX_PIXELS = 4096 * 4096  # native-resolution overlay figures up to this size


def model_grid(scene, scale: float) -> tuple[int, int]:
    """Size (rows, cols) of the scene on the model's pixel grid."""
    return max(1, round(scene.height * scale)), max(1, round(scene.width * scale))


def read_model_window(scene, row: int, col: int, th: int, tw: int, scale: float,
                      channel_order: str) -> tuple[np.ndarray, np.ndarray]:
    """(th, tw, 3) float32 in [0, 1] and (th, tw) validity of one model-grid window."""
    if scale == 1.0:
        img, valid = scene.read_uint8(row, col, th, tw, gray=scene.count not in (3, 4))
    else:
        r0, c0 = int(np.floor(row / scale)), int(np.floor(col / scale))
        h = max(1, round(th / scale))
        w = max(1, round(tw / scale))
        img, valid = scene.read_uint8(r0, c0, h, w, gray=scene.count not in (3, 4),
                                      out_shape=(th, tw))
    img = img[:3] if img.shape[0] >= 3 else np.repeat(img[:1], 3, axis=0)
    x = np.moveaxis(img, 0, -1).astype(np.float32) / 255.0
    if not valid.all():  # nodata -> the local mean of the valid pixels, never 0
        from crater_resunet.pyramid import fill_invalid

        x = fill_invalid(x, valid)
    if channel_order == "bgr":
        x = x[..., ::-1]
    return np.ascontiguousarray(x), valid


def stream_probability(model, scene, writers, *, scale: float = 1.0,
                       overlap: int | None = None, batch_size: int = 8,
                       channel_order: str = "bgr", blend: str | None = None,
                       progress: bool | None = False) -> int:
    """Predict the scene on the model grid through ``shared.engine`` (each window once, the
    windows averaged: ``crater_resunet.pyramid.BLEND``) into the engine ``writers``; returns
    the number of windows predicted. ``overlap`` defaults to a quarter tile; ``progress``: a
    bar over the windows."""
    from crater_resunet.pyramid import BLEND, as_predictor, channels_first, resolve_overlap
    from shared import engine

    fn, (th, tw) = as_predictor(model)
    H, W = model_grid(scene, scale)
    overlap = resolve_overlap(overlap, th, tw)

    def read(win):
        x, valid = read_model_window(scene, win.row, win.col, th, tw, scale, channel_order)
        return np.moveaxis(x, -1, 0), valid

    stats = engine.run(read, channels_first(fn), H, W, (th, tw), writers,
                       stride=(th - overlap, tw - overlap),
                       edge="shift" if H >= th and W >= tw else "pad", blend=blend or BLEND,
                       batch_size=batch_size, progress=progress, desc=scene.path.name)
    return stats.windows_predicted


def detect_craters(prob_path: Path, min_area: float = 0.0, strip: int = 512,
                   margin: int = 256, threshold: float = 0.5, sigma: float = 1.0,
                   closing: int = 1, nms: bool = True) -> dict:
    """Crater table (:mod:`crater_resunet.craters`, model-grid pixels) of the written
    probability GeoTIFF (NaN = nodata), extracted in overlapping row strips (smoothing,
    threshold, closing, one crater per blob; a blob belongs to the strip holding its first
    row), merged by the crater NMS."""
    import rasterio

    from crater_resunet import craters as cr

    tables = []
    with rasterio.open(prob_path) as sp:
        H, W = sp.height, sp.width
        for s in range(0, H, strip):
            top = max(0, s - 8)  # context above the strip for the smoothing
            h = min(strip + margin, H - top)
            prob = sp.read(1, window=rasterio.windows.Window(0, top, W, h))
            t = cr.extract_craters(prob, np.isfinite(prob), threshold=threshold, sigma=sigma,
                                   closing=closing, min_area=min_area, nms=False)
            first = t["top"] + top
            # blobs starting on the strip's context rows belong to the previous strip
            keep = (first >= s) & (first < s + strip) & ((t["top"] > 0) | (top == 0))
            t = cr.take(t, keep)
            t["y"] = t["y"] + top
            tables.append(t)
    table = cr.concat(tables)
    return cr.crater_nms(table) if nms else table


def predict_raster(model, path: Path, out: Path, *, scale: float = 1.0,
                   overlap: int | None = None,
                   threshold: float = 0.5, min_area: float = 0.0, batch_size: int = 8,
                   channel_order: str = "bgr", scales=None, sigma: float = 1.0,
                   closing: int = 1, drop_nodata: bool = False, figure: bool = False,
                   progress: bool | None = False) -> dict:
    """Probability and mask GeoTIFFs (input CRS, transform scaled to the model grid, nodata)
    and the crater rows of one raster. ``scales`` (None, ``"auto"`` or a list) are pyramid
    factors relative to ``scale``; each extra level writes ``<stem>_s<factor>_prob.tif`` and
    ``_mask.tif``; the levels are merged by the crater NMS. ``figure``: the predicted circles
    on the raster at native resolution with a scale bar (``figures/<stem>_overlay.png``;
    rasters up to ``OVERLAY_MAX_PIXELS``); ``progress``: a bar over the windows (None: on a
    terminal)."""
    import rasterio

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return _predict_raster(model, Path(path), Path(out), scale, overlap, threshold,
                               min_area, batch_size, channel_order, scales, sigma, closing,
                               drop_nodata, figure, progress)


def write_level(model, scene, prob_path: Path, geo: dict, scale: float, **stream) -> int:
    """One pyramid level: the probability GeoTIFF ``prob_path`` and the mask beside it
    (``..._mask.tif``: band description, colour table, class names, GDAL categories and a QGIS
    style), streamed by ``shared.engine``; returns the windows predicted."""
    from shared.engine import GeoTIFFWriter
    from shared.rasters import describe_class_band, write_class_sidecars

    threshold = stream.pop("threshold")

    def mask(prob, valid):
        return np.where(valid, (prob >= threshold).astype(np.uint8), MASK_NODATA).astype(
            np.uint8)

    mask_path = prob_path.with_name(prob_path.name.replace("_prob.tif", "_mask.tif"))
    prob_path.parent.mkdir(parents=True, exist_ok=True)
    with GeoTIFFWriter(prob_path, dtype="float32", nodata=float("nan"), **geo) as dp, \
            GeoTIFFWriter(mask_path, dtype="uint8", nodata=MASK_NODATA, encode=mask,
                          **geo) as dm:
        dp.dataset.set_band_description(1, f"crater probability (scale {scale:g})")
        describe_class_band(dm.dataset, MASK_CLASSES, MASK_COLOURS, nodata=MASK_NODATA,
                            description=f"crater mask (1 = crater, threshold "
                                        f"{threshold:g}, scale {scale:g})")
        n = stream_probability(model, scene, [dp, dm], scale=scale, **stream)
    write_class_sidecars(mask_path, MASK_CLASSES, MASK_COLOURS)
    return n


def _predict_raster(model, path: Path, out: Path, scale: float, overlap: int | None,
                    threshold: float, min_area: float, batch_size: int,
                    channel_order: str, scales=None, sigma: float = 1.0, closing: int = 1,
                    drop_nodata: bool = False, figure: bool = False,
                    progress: bool | None = False) -> dict:
    from affine import Affine

    from crater_resunet import craters as cr
    from crater_resunet.pyramid import auto_scales, parse_scales
    from shared.rasters import RasterError, check_bands, open_scene

    factors = parse_scales(scales)
    with open_scene(path) as scene:
        check_bands(path, scene.count, model="the crater model (grey or RGB)")
        if scene.all_invalid():
            raise RasterError(path, "every pixel is nodata/NaN: nothing to predict")
        H0, W0 = model_grid(scene, scale)
        th, tw = (int(v) for v in model.input_shape[1:3])
        if factors is None:
            factors = [1.0]
        elif factors == "auto":
            factors = auto_scales(H0, W0, (th, tw))
        tables, levels, n = [], [], 0
        for f in factors:
            s = scale * f
            H, W = model_grid(scene, s)
            transform = scene.transform @ Affine.scale(scene.width / W, scene.height / H)
            geo = dict(width=W, height=H, count=1, crs=scene.crs,
                       transform=transform if scene.georeferenced else None)
            tag = "" if f == 1.0 else f"_s{f:g}"
            prob_path = out / "masks" / f"{Path(path).stem}{tag}_prob.tif"
            n += write_level(model, scene, prob_path, geo, s, overlap=overlap,
                             threshold=threshold, batch_size=batch_size,
                             channel_order=channel_order, progress=progress)
            # min_area is in input pixels at the base scale, then the same model-grid area at
            # every pyramid level (the smallest blob the model resolves)
            t = detect_craters(prob_path, min_area * scale * scale, threshold=threshold,
                               sigma=sigma, closing=closing, nms=False)
            sx, sy = W / scene.width, H / scene.height
            t = cr.scaled(t, sx)
            t["y"] = t["y"] * sx / sy
            t["height"] = t["height"] * sx / sy
            t["scale"] = np.full(len(t["x"]), s)
            tables.append(t)
            levels.append({"scale": s, "model_grid": [H, W], "craters": len(t["x"])})
        table = cr.crater_nms(cr.concat(tables))
        if drop_nodata:
            table = cr.take(table, table["nodata"] == 0)
        rows = cr.catalogue_rows(scene, Path(path).name, table)
        info = {"image": Path(path).name, "windows": n, "model_grid": [H0, W0], "scale": scale,
                "craters_predicted": len(rows), "georeferenced": scene.georeferenced,
                "crs": scene.crs.to_string() if scene.crs else None,
                "stretch": scene.stretch}
        if len(levels) > 1:
            info["levels"] = levels
        if figure and scene.height * scene.width <= OVERLAY_MAX_PIXELS:
            from crater_resunet.figures import circles, write_overlay

            img, _ = scene.read_uint8(0, 0, scene.height, scene.width,
                                      gray=scene.count not in (3, 4))
            img = img[0] if img.shape[0] == 1 else np.moveaxis(img[:3], 0, -1)
            png = out / "figures" / f"{Path(path).stem}_overlay.png"
            write_overlay(img, circles(rows), png, pixel_size_m=scene.pixel_size_m)
            info["overlay"] = str(png)
        xy = scene.xy
        crs = scene.crs.to_wkt() if scene.georeferenced else None
        return {"rows": rows, "info": info,
                "layer": (Path(path).stem, rows, {"xy": xy, "crs": crs}) if crs else None}


def resolve_scale(scene_path: Path, scale: float | None, target_resolution: float | None,
                  train_resolution: float | None) -> float:
    """Model pixels per input pixel: ``--scale``, else input resolution / target resolution
    (``--target-resolution``, else the run config's ``data.resolution_m``), else 1."""
    from shared.rasters import RasterError, open_scene

    with open_scene(scene_path) as scene:
        px, size = scene.pixel_size_m, (scene.height, scene.width)
    if scale is not None:
        if not (scale > 0 and np.isfinite(scale)):
            raise RasterError(scene_path, f"--scale must be a positive finite number, got "
                                          f"{scale}")
        return check_scale(scene_path, float(scale), size, "--scale")
    target = target_resolution or train_resolution
    if not target:
        return 1.0
    if px is None:
        if target_resolution:
            raise RasterError(scene_path, "no pixel size in metres (not georeferenced): "
                                          "use --scale instead of --target-resolution")
        return 1.0
    return check_scale(scene_path, float(px) / float(target), size,
                       f"a target resolution of {target:g} m/px")


MIN_GRID = 16                 # model-grid pixels along the longer side, at the least
MAX_GRID_PIXELS = 2.0 ** 36   # about 69 Gpx on the model grid (a 20,000 x 200,000 HiRISE
                              # image at 4x); beyond it a typo, not a scene


def check_scale(path: Path, scale: float, size: tuple[int, int], what: str) -> float:
    """A scale whose model grid means something: the scene at least ``MIN_GRID`` model pixels
    long (a tiny scale would read one model window from an enormous input window) and at
    most ``MAX_GRID_PIXELS`` in all. One line naming the file otherwise."""
    from shared.rasters import RasterError

    h, w = (max(1, round(v * scale)) for v in size)
    if max(size) * scale < MIN_GRID:
        raise RasterError(path, f"{what} (model pixels per input pixel {scale:g}) shrinks the "
                                f"{size[1]}x{size[0]} raster to {w}x{h} model pixels; at least "
                                f"{MIN_GRID} along its longer side are needed")
    if h * w > MAX_GRID_PIXELS:
        raise RasterError(path, f"{what} (model pixels per input pixel {scale:g}) makes the "
                                f"{size[1]}x{size[0]} raster {w}x{h} model pixels, more than "
                                f"{MAX_GRID_PIXELS:.3g}; check the value")
    return scale
