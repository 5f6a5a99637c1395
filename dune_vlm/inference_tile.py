"""Map a huge 64-band GeoTIFF with sliding-window inference, window by window.

The raster is never loaded whole. The windows (``--tile_size``, ``--stride``) are planned once
with ``shared.tiles.iter_windows`` and predicted exactly once each, one window row after the
other: each window is read from disk, predicted in batches, and its softmax probabilities are
blended into a rolling strip of ``tile_size`` rows with a smooth weight: zero in a margin of
``overlap/4`` along window sides that lie inside the raster (where a window lacks context),
then a cosine ramp up to 1, and full weight on sides that lie on the raster border. The rows
that no later window touches are then final and written. Neighbouring windows' weights overlap,
so the blend has no seams, and a model whose receptive field is within the margin gives
exactly its whole-image prediction.

Output: a tiled, deflate-compressed uint8 GeoTIFF with the input's CRS and transform, class
indexes, 255 where the input is nodata, an embedded class colour table and, with
``--confidence``, a second band holding the blended maximum probability x 100. Memory: the
batch of windows plus the strip, ``classes x tile_size x width`` float32 (independent of the
raster's height).
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NODATA_OUT = 255


class TileInferenceError(ValueError):
    pass


def side_weight(n: int, margin: int, ramp: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D weight: 0 inside ``margin``, cosine ramp over ``ramp`` px, 1 in the middle."""
    d = np.arange(n, dtype=np.float64)
    w = np.ones(n)

    def ramp_fn(dist):
        t = np.clip((dist - margin + 0.5) / max(ramp, 1), 0.0, 1.0)
        return np.where(dist < margin, 0.0, np.sin(0.5 * np.pi * t) ** 2)

    if taper_start:
        w = np.minimum(w, ramp_fn(d))
    if taper_end:
        w = np.minimum(w, ramp_fn(n - 1 - d))
    return w


def _to_float(block: np.ndarray, nodata, scale: float):
    """(bands, h, w) -> float32 scaled features and (h, w) nodata mask (zeroed there)."""
    if block.dtype.kind == "f":
        bad = ~np.isfinite(block).all(axis=0)
    else:
        bad = np.zeros(block.shape[1:], bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        bad |= (block == nodata).any(axis=0)
    x = block.astype(np.float32)
    if scale != 1.0:
        x *= scale
    x[:, bad] = 0.0
    return x, bad


def plan_windows(height: int, width: int, tile: int, stride: int) -> list[list]:
    """The windows of the raster, grouped by window row (``shared.tiles.iter_windows``)."""
    from shared.tiles import iter_windows

    rows: dict[int, list] = {}
    for win in iter_windows(height, width, tile, stride, edge="shift"):
        rows.setdefault(win.row, []).append(win)
    return [rows[r] for r in sorted(rows)]


@dataclass
class Strip:
    """Blend accumulators for raster rows ``top .. top + rows`` (full width)."""

    rows: int
    width: int
    top: int = 0
    acc: np.ndarray | None = None
    wsum: np.ndarray = field(init=False)
    valid: np.ndarray = field(init=False)

    def __post_init__(self):
        self.wsum = np.zeros((self.rows, self.width), np.float32)
        self.valid = np.zeros((self.rows, self.width), bool)

    def add(self, prob: np.ndarray, weight: np.ndarray, good: np.ndarray, row: int,
            col: int) -> None:
        """Blend one window's (C, h, w) probabilities placed at raster ``(row, col)``."""
        if self.acc is None:
            self.acc = np.zeros((prob.shape[0], self.rows, self.width), np.float32)
        h = min(prob.shape[1], self.rows - (row - self.top))
        w = min(prob.shape[2], self.width - col)
        r0 = row - self.top
        self.acc[:, r0:r0 + h, col:col + w] += prob[:, :h, :w] * weight[:h, :w]
        self.wsum[r0:r0 + h, col:col + w] += weight[:h, :w]
        self.valid[r0:r0 + h, col:col + w] |= good[:h, :w]

    def take(self, n: int, confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Class (and confidence) of the first ``n`` rows, then move the strip down by ``n``."""
        cls = np.full((n, self.width), NODATA_OUT, np.uint8)
        conf = np.full((n, self.width), NODATA_OUT, np.uint8) if confidence else None
        ok = (self.wsum[:n] > 0) & self.valid[:n]
        if self.acc is not None and ok.any():
            part = self.acc[:, :n][:, ok]
            cls[ok] = part.argmax(axis=0).astype(np.uint8)
            if confidence:
                best = part.max(axis=0) / self.wsum[:n][ok]
                conf[ok] = np.clip(np.rint(best * 100), 0, 100).astype(np.uint8)
        for a in (self.acc, self.wsum, self.valid):
            if a is not None:
                if n < self.rows:
                    a[..., :self.rows - n, :] = a[..., n:, :]  # numpy copies overlaps safely
                a[..., self.rows - n:, :] = 0
        self.top += n
        return cls, conf


def read_windows(src, wins, tile: int, nodata, scale: float):
    """(features (n, bands, tile, tile), nodata masks) of ``wins``, read from disk."""
    from rasterio.windows import Window

    from shared.rasters import RasterError, read_window

    xs, bads = [], []
    for win in wins:
        try:
            raw = read_window(src, Window(win.col, win.row, tile, tile),
                              fill_value=nodata if nodata is not None else 0)
        except RasterError as exc:
            raise TileInferenceError(str(exc)) from None
        x, bad = _to_float(raw, nodata, scale)
        xs.append(x)
        bads.append(bad)
    return xs, bads


def predict_batch(model, text, xs: list[np.ndarray], device) -> np.ndarray:
    """Softmax probabilities (n, C, tile, tile) of one batch of windows."""
    import torch

    with torch.inference_mode():
        xb = torch.from_numpy(np.stack(xs)).to(device)
        return torch.softmax(model(xb, text).float(), dim=1).cpu().numpy()


def blend_weight(win, tile: int, height: int, width: int, margin: int, ramp: int,
                 bad: np.ndarray) -> np.ndarray:
    """2-D weight of a window: tapered on sides inside the raster, 0 on nodata pixels."""
    wr = side_weight(tile, margin, ramp, win.row > 0, win.row + tile < height)
    wc = side_weight(tile, margin, ramp, win.col > 0, win.col + tile < width)
    w = np.outer(wr, wc).astype(np.float32)
    w[bad] = 0.0
    return w


def _check_args(input_tif: Path, tile_size: int, stride: int, batch_size: int,
                margin: int | None) -> tuple[int, int]:
    if tile_size <= 0 or tile_size % 32:
        raise TileInferenceError(f"tile size must be a positive multiple of 32, got {tile_size}")
    if not 0 < stride <= tile_size:
        raise TileInferenceError(f"stride must be in 1..tile size ({tile_size}), got {stride}")
    if batch_size < 1:
        raise TileInferenceError("batch size must be positive")
    if not input_tif.is_file():
        raise TileInferenceError(f"{input_tif}: file not found")
    overlap = tile_size - stride
    margin = overlap // 4 if margin is None else int(margin)
    if overlap and 2 * margin > overlap:
        raise TileInferenceError(f"margin {margin} too large for overlap {overlap}")
    return margin, max(overlap - 2 * margin, 1)


def _open_input(input_tif: Path, in_chans):
    import rasterio

    try:
        src = rasterio.open(input_tif)
    except rasterio.errors.RasterioIOError as exc:
        raise TileInferenceError(f"{input_tif}: not a readable raster ({exc})") from None
    if in_chans is not None and src.count != in_chans:
        src.close()
        raise TileInferenceError(f"{input_tif}: has {src.count} bands, the model expects "
                                 f"{in_chans}")
    if src.crs is None:
        src.close()
        raise TileInferenceError(f"{input_tif}: has no CRS (a georeferenced export is needed "
                                 "to write a map)")
    return src


def _predict_row(src, wins, strip, model, text, ctx, stats, bar) -> None:
    """Predict one window row (each window once) and blend it into the strip."""
    tile, bs = ctx["tile"], ctx["batch_size"]
    for i in range(0, len(wins), bs):
        chunk = wins[i:i + bs]
        xs, bads = read_windows(src, chunk, tile, ctx["nodata"], ctx["scale"])
        keep = [j for j, bad in enumerate(bads) if not bad.all()]
        stats["windows_skipped_nodata"] += len(chunk) - len(keep)
        bar.update(len(chunk))
        if not keep:
            continue
        probs = predict_batch(model, text, [xs[j] for j in keep], ctx["device"])
        stats["windows_predicted"] += len(keep)
        stats["num_classes"] = int(probs.shape[1])
        for p, j in zip(probs, keep):
            win, bad = chunk[j], bads[j]
            w = blend_weight(win, tile, src.height, src.width, ctx["margin"], ctx["ramp"], bad)
            strip.add(p, w, ~bad, win.row, win.col)


def write_rows(dst, strip: Strip, n: int, confidence: bool) -> None:
    """Write the strip's first ``n`` (final) rows and move it down."""
    from rasterio.windows import Window

    row = strip.top
    cls, conf = strip.take(n, confidence)
    win = Window(0, row, strip.width, n)
    dst.write(cls, 1, window=win)
    if confidence:
        dst.write(conf, 2, window=win)


def predict_raster(
    input_tif, output_tif, model, text=None, *, tile_size: int = 512, stride: int = 256,
    batch_size: int = 4, device="cpu", confidence: bool = False,
    input_scale: float | None = None, nodata: float | None = None, colormap=None,
    margin: int | None = None, progress: bool = True, gdal_cache_mb: int = 128,
) -> dict:
    """Classify ``input_tif`` into ``output_tif``: plan, predict, blend, write; returns run
    statistics (windows planned and predicted, peak RSS)."""
    import rasterio
    from tqdm import tqdm

    from shared.rasters import geotiff_writer

    input_tif, output_tif = Path(input_tif), Path(output_tif)
    margin, ramp = _check_args(input_tif, tile_size, stride, batch_size, margin)
    t_start = time.time()
    stats = {"windows_predicted": 0, "windows_skipped_nodata": 0, "num_classes": None}
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb), \
            _open_input(input_tif, getattr(model, "in_chans", None)) as src:
        H, W = src.height, src.width
        nd = nodata if nodata is not None else src.nodata
        dtype = np.dtype(src.dtypes[0])
        scale = input_scale if input_scale is not None else \
            (1.0 / 127.0 if dtype.kind in "iu" else 1.0)
        plan = plan_windows(H, W, tile_size, stride)
        total = sum(len(r) for r in plan)
        ctx = {"tile": tile_size, "batch_size": batch_size, "nodata": nd, "scale": scale,
               "device": device, "margin": margin, "ramp": ramp}
        strip = Strip(tile_size, W)
        with geotiff_writer(output_tif, width=W, height=H, count=2 if confidence else 1,
                            dtype="uint8", crs=src.crs, transform=src.transform,
                            nodata=NODATA_OUT, blocksize=256) as dst:
            bar = tqdm(total=total, desc="windows", unit="win", disable=not progress)
            for k, wins in enumerate(plan):
                _predict_row(src, wins, strip, model, text, ctx, stats, bar)
                end = plan[k + 1][0].row if k + 1 < len(plan) else H
                write_rows(dst, strip, end - strip.top, confidence)
            bar.close()
            if colormap:
                dst.write_colormap(1, colormap)
            dst.set_band_description(1, "dune class (255 = nodata)")
            if confidence:
                dst.set_band_description(2, "confidence: blended max probability x 100")
        bands = src.count
    stats.update({
        "input": str(input_tif), "output": str(output_tif), "height": H, "width": W,
        "bands": bands, "dtype": dtype.name, "tile_size": tile_size, "stride": stride,
        "batch_size": batch_size, "margin": margin, "windows_total": total,
        "wall_s": round(time.time() - t_start, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    })
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Sliding-window classification of a huge 64-band GeoTIFF into a uint8 "
                    "dune-class GeoTIFF (same CRS/transform, nodata 255, colour table), read "
                    "and written window by window with bounded memory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input_tif", required=True, help="64-band embedding GeoTIFF")
    p.add_argument("--output_tif", required=True, help="classification GeoTIFF to write")
    p.add_argument("--weights", required=True,
                   help="our checkpoint (best.pt) or a reference best_model.pth")
    p.add_argument("--text_embed_path", help="(classes, D) .npy; default: stored in our "
                   "checkpoint; required for a reference fusion file; an error for the baseline")
    p.add_argument("--tile_size", type=int, default=512, help="model window (multiple of 32)")
    p.add_argument("--stride", type=int, default=None,
                   help="window step (default: tile_size - overlap)")
    p.add_argument("--overlap", type=int, default=256, help="window overlap in pixels")
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--confidence", action="store_true", help="add a confidence band")
    p.add_argument("--input_scale", type=float, default=None,
                   help="multiply input values (default 1/127 for integer rasters, else 1)")
    p.add_argument("--nodata", type=float, default=None,
                   help="input nodata value (default: from the file)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no_progress", action="store_true")
    return p


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from dune_vlm.checkpoint import load_model_for_inference
    from dune_vlm.evaluation import pick_device
    from dune_vlm.utils.config import class_colors
    from shared.runs import check_not_inputs, check_output_dir

    torch.set_num_threads(max(1, args.threads))
    check_not_inputs([args.output_tif], [args.input_tif, args.weights, args.text_embed_path])
    check_output_dir(Path(args.output_tif).parent)
    stride = args.stride if args.stride is not None else args.tile_size - args.overlap
    dev = pick_device(args.device)
    model, text, _ = load_model_for_inference(args.weights, args.text_embed_path, dev)
    colors = {k: (*c, 255) for k, c in class_colors().items()}
    stats = predict_raster(
        args.input_tif, args.output_tif, model, text, tile_size=args.tile_size,
        stride=stride, batch_size=args.batch_size, device=dev,
        confidence=args.confidence, input_scale=args.input_scale, nodata=args.nodata,
        colormap=colors, progress=not args.no_progress)
    print(f"wrote {stats['output']}: {stats['width']}x{stats['height']}, "
          f"{stats['windows_predicted']} windows predicted "
          f"({stats['windows_skipped_nodata']} all-nodata skipped), {stats['wall_s']} s, "
          f"peak RSS {stats['peak_rss_mb']} MB")
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv, (TileInferenceError,))


if __name__ == "__main__":
    sys.exit(main())
