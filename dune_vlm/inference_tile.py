"""Map a huge 64-band GeoTIFF with sliding-window inference, window by window.

The raster is never loaded whole. The windows (``--tile_size``, ``--stride``) are planned once
with ``shared.tiles.iter_windows`` and predicted exactly once each, one window row after the
other. The input rows of the current window row are held over the whole width in a ring
(``RowReader``: each block of the file is decoded once, the next rows in a background thread
while the model predicts), or read window by window where that ring would be too large
(``WindowReader``). Windows are predicted in batches, and their softmax probabilities are
blended into a rolling strip of ``tile_size`` rows with a smooth weight: zero in a margin of
``overlap/4`` along window sides that lie inside the raster (where a window lacks context),
then a cosine ramp up to 1, and full weight on sides that lie on the raster border. The rows
that no later window touches are then final and written. Neighbouring windows' weights overlap,
so the blend has no seams, and a model whose receptive field is within the margin gives
exactly its whole-image prediction.

Output: a tiled, deflate-compressed uint8 GeoTIFF with the input's CRS and transform, class
indexes, 255 where the input is nodata, an embedded class colour table and, with
``--confidence``, a second band holding the blended maximum probability x 100. Memory: the
input ring, ``bands x (tile + stride) x width`` of the file's dtype, the output strip,
``classes x tile_size x width`` float32, and a batch of windows (independent of the raster's
height).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.runs import UserError

NODATA_OUT = 255



# Budget of RowReader's ring of input rows; above it the mapper reads window by window
# (measured on int8 LZW rasters, whole process: 4,096^2 in 26 s with the ring, 57 s window by
# window; 8,192^2 needs 1,993 MB with the ring, 1,603 MB window by window).
MAX_ROWS_MB = 1024

class TileInferenceError(UserError):
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
        """Blend one window's (C, h, w) probabilities placed at raster ``(row, col)``
        (``prob`` is weighted in place)."""
        if self.acc is None:
            self.acc = np.zeros((prob.shape[0], self.rows, self.width), np.float32)
        h = min(prob.shape[1], self.rows - (row - self.top))
        w = min(prob.shape[2], self.width - col)
        r0 = row - self.top
        p = prob[:, :h, :w]
        np.multiply(p, weight[:h, :w], out=p)
        self.acc[:, r0:r0 + h, col:col + w] += p
        self.wsum[r0:r0 + h, col:col + w] += weight[:h, :w]
        self.valid[r0:r0 + h, col:col + w] |= good[:h, :w]

    def take(self, n: int, confidence: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Class (and confidence) of the first ``n`` rows, then move the strip down by ``n``."""
        cls = np.full((n, self.width), NODATA_OUT, np.uint8)
        conf = np.full((n, self.width), NODATA_OUT, np.uint8) if confidence else None
        ok = (self.wsum[:n] > 0) & self.valid[:n]
        if self.acc is not None and ok.any():
            best, arg = self.acc[0, :n].copy(), np.zeros((n, self.width), np.uint8)
            for c in range(1, len(self.acc)):  # argmax over classes, first maximum wins
                np.copyto(arg, np.uint8(c), where=self.acc[c, :n] > best)
                np.maximum(best, self.acc[c, :n], out=best)
            cls[ok] = arg[ok]
            if confidence:
                best = best[ok] / self.wsum[:n][ok]
                conf[ok] = np.clip(np.rint(best * 100), 0, 100).astype(np.uint8)
        for a in (self.acc, self.wsum, self.valid):
            if a is not None:
                if n < self.rows:
                    a[..., :self.rows - n, :] = a[..., n:, :]  # numpy copies overlaps safely
                a[..., self.rows - n:, :] = 0
        self.top += n
        return cls, conf


class RowReader:
    """The input rows of the current window row over the whole width, in the file's dtype,
    zeroed where a pixel is not data, with that mask, in a ring of ``tile + stride`` rows
    (raster row ``r`` in slot ``r % (tile + stride)``). Consecutive window rows share
    ``tile - stride`` rows, which stay, so every block of the file is decoded once (a windowed
    GeoTIFF read decodes each block it touches, and GDAL's cache would have to hold two block
    rows of 64-band blocks to spare that); the next ``stride`` rows are decoded in a background
    thread while the model predicts the current row. Memory: ``bands x (tile + stride) x
    width`` of the file's dtype (403 MB at 8,192 px wide in int8, tile 512, stride 256)."""

    def __init__(self, src, tile: int, stride: int, nodata):
        from concurrent.futures import ThreadPoolExecutor

        self.src, self.tile, self.nodata, self.size = src, tile, nodata, tile + stride
        width = max(src.width, tile)
        self.raw = np.zeros((src.count, self.size, width), np.dtype(src.dtypes[0]))
        self.bad = np.ones((self.size, width), bool)
        self.end = 0  # rows < end are read, being read, or lie past the bottom
        self.pool, self.pending = ThreadPoolExecutor(1, thread_name_prefix="rows"), None

    @staticmethod
    def nbytes(src, tile: int, stride: int) -> int:
        return src.count * (tile + stride) * max(src.width, tile) * \
            np.dtype(src.dtypes[0]).itemsize

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def start_row(self, row: int, next_row: int | None) -> None:
        """Hold rows ``row .. row + tile`` (waiting for the background read), then start
        reading the rows the next window row adds."""
        if self.pending is not None:
            self.pending.result()  # re-raises a read error
            self.pending = None
        self._read_upto(row + self.tile)
        if next_row is not None:
            assert next_row - row <= self.size - self.tile, "window rows further than stride"
            self.pending = self.pool.submit(self._read_upto, next_row + self.tile)

    def _read_upto(self, stop: int) -> None:
        r, self.end = self.end, max(self.end, stop)
        while r < stop:  # at most two runs of ring slots
            slot = r % self.size
            n = min(stop - r, self.size - slot)
            self._read(r, slot, n)
            r += n

    def _read(self, row: int, slot: int, n: int) -> None:
        from rasterio.errors import RasterioIOError
        from rasterio.windows import Window

        from shared.rasters import RasterError, nodata_mask

        inside, W = max(0, min(n, self.src.height - row)), self.src.width
        raw, bad = self.raw[:, slot:slot + inside, :W], self.bad[slot:slot + inside, :W]
        if inside:
            try:
                self.src.read(window=Window(0, row, W, inside), out=raw)
            except RasterioIOError as exc:
                raise TileInferenceError(str(RasterError(
                    self.src.name, f"truncated or corrupt data in rows {row}..{row + inside} "
                    f"({exc})"))) from None
            bad[:] = nodata_mask(raw, self.nodata, any_band=True)
            if bad.any():
                raw[:, bad] = 0
        self.raw[:, slot + inside:slot + n] = 0  # past the bottom: not data
        self.bad[slot + inside:slot + n] = True

    def window(self, win) -> tuple[list, np.ndarray]:
        """``([(first row, (bands, h, tile) values), ...], (tile, tile) not-data mask)``."""
        t, c, s0 = self.tile, win.col, win.row % self.size
        if s0 + t <= self.size:
            return [(0, self.raw[:, s0:s0 + t, c:c + t])], self.bad[s0:s0 + t, c:c + t]
        k = self.size - s0  # the window wraps round the ring
        parts = [(0, self.raw[:, s0:, c:c + t]), (k, self.raw[:, :t - k, c:c + t])]
        return parts, np.concatenate([self.bad[s0:, c:c + t], self.bad[:t - k, c:c + t]])


class WindowReader:
    """Window by window from disk (each block decoded once per window touching it): the
    fallback when a ``RowReader`` would exceed the memory allowed for it."""

    def __init__(self, src, tile: int, nodata):
        self.src, self.tile, self.nodata = src, tile, nodata

    def start_row(self, row: int, next_row: int | None) -> None:
        pass

    def close(self) -> None:
        pass

    def window(self, win) -> tuple[list, np.ndarray]:
        from rasterio.windows import Window

        from shared.rasters import RasterError, nodata_mask, read_window

        try:
            raw = read_window(self.src, Window(win.col, win.row, self.tile, self.tile),
                              fill_value=self.nodata if self.nodata is not None else 0)
        except RasterError as exc:
            raise TileInferenceError(str(exc)) from None
        bad = nodata_mask(raw, self.nodata, any_band=True)
        bad[self.src.height - win.row:] = True  # boundless fill: not data
        bad[:, self.src.width - win.col:] = True
        raw[:, bad] = 0
        return [(0, raw)], bad


def to_batch(views: list, scale: float, out: np.ndarray) -> np.ndarray:
    """Scaled float32 features (n, bands, tile, tile) of the windows ``views`` (readers'
    ``window()``, already zero where a pixel is not data) in ``out[:n]``."""
    for x, (parts, _) in zip(out, views):
        for r0, raw in parts:
            dst = x[:, r0:r0 + raw.shape[1]]
            if scale != 1.0:
                np.multiply(raw, np.float32(scale), out=dst, casting="unsafe")
            else:
                np.copyto(dst, raw, casting="unsafe")
    return out[:len(views)]


def predict_batch(model, text, xb: np.ndarray, device) -> np.ndarray:
    """Softmax probabilities (n, C, tile, tile) of one batch of windows (n, bands, tile, tile)."""
    import torch

    with torch.inference_mode():
        xb = torch.from_numpy(xb).to(device)
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


def _predict_row(reader, wins, next_row, strip, model, text, ctx, stats, bar) -> None:
    """Predict one window row (each window once) and blend it into the strip."""
    tile, bs = ctx["tile"], ctx["batch_size"]
    reader.start_row(wins[0].row, next_row)
    for i in range(0, len(wins), bs):
        chunk = [(win, reader.window(win)) for win in wins[i:i + bs]]
        bar.update(len(chunk))
        keep = [(win, view) for win, view in chunk if not view[1].all()]
        stats["windows_skipped_nodata"] += len(chunk) - len(keep)
        if not keep:
            continue
        xb = to_batch([view for _, view in keep], ctx["scale"], ctx["batch"])
        probs = predict_batch(model, text, xb, ctx["device"])
        stats["windows_predicted"] += len(keep)
        stats["num_classes"] = int(probs.shape[1])
        for p, (win, (_, bad)) in zip(probs, keep):
            w = blend_weight(win, tile, ctx["height"], ctx["width"], ctx["margin"],
                             ctx["ramp"], bad)
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
    class_names: list[str] | None = None,
    margin: int | None = None, progress: bool = True, max_rows_mb: int = MAX_ROWS_MB,
) -> dict:
    """Classify ``input_tif`` into ``output_tif``: plan, predict, blend, write; returns run
    statistics (windows planned and predicted, the reader used, peak RSS).

    The input is read by a ``RowReader`` (each block decoded once) unless its rows would take
    more than ``max_rows_mb``; then window by window (``WindowReader``)."""
    import rasterio
    from tqdm import tqdm

    from shared.rasters import geotiff_writer

    input_tif, output_tif = Path(input_tif), Path(output_tif)
    margin, ramp = _check_args(input_tif, tile_size, stride, batch_size, margin)
    if input_scale is not None and not (np.isfinite(input_scale) and input_scale > 0):
        raise TileInferenceError(f"--input-scale {input_scale}: expected a positive finite "
                                 "number (nan or 0 gives a map of one class)")  # issue 27
    t_start = time.time()
    stats = {"windows_predicted": 0, "windows_skipped_nodata": 0, "num_classes": None}
    # the reader decodes each block once: GDAL's block cache would only hold copies
    with rasterio.Env(GDAL_CACHEMAX=64), \
            _open_input(input_tif, getattr(model, "in_chans", None)) as src:
        H, W = src.height, src.width
        nd = nodata if nodata is not None else src.nodata
        dtype = np.dtype(src.dtypes[0])
        scale = input_scale if input_scale is not None else \
            (1.0 / 127.0 if dtype.kind in "iu" else 1.0)
        plan = plan_windows(H, W, tile_size, stride)
        total = sum(len(r) for r in plan)
        rows_fit = RowReader.nbytes(src, tile_size, stride) <= max_rows_mb * 2**20
        reader = RowReader(src, tile_size, stride, nd) if rows_fit else \
            WindowReader(src, tile_size, nd)
        ctx = {"tile": tile_size, "batch_size": batch_size, "scale": scale, "device": device,
               "margin": margin, "ramp": ramp, "height": H, "width": W,
               "batch": np.empty((batch_size, src.count, tile_size, tile_size), np.float32)}
        strip = Strip(tile_size, W)
        with geotiff_writer(output_tif, width=W, height=H, count=2 if confidence else 1,
                            dtype="uint8", crs=src.crs, transform=src.transform,
                            nodata=NODATA_OUT, blocksize=256) as dst:
            bar = tqdm(total=total, desc="windows", unit="win", disable=not progress)
            with contextlib.closing(reader):
                for k, wins in enumerate(plan):
                    nxt = plan[k + 1][0].row if k + 1 < len(plan) else None
                    _predict_row(reader, wins, nxt, strip, model, text, ctx, stats, bar)
                    write_rows(dst, strip, (H if nxt is None else nxt) - strip.top, confidence)
            bar.close()
            if colormap and class_names:  # colour table, band description, class names
                from shared.rasters import describe_class_band

                describe_class_band(dst, class_names, colormap, band=1, nodata=NODATA_OUT,
                                    description="dune class (255 = nodata)")
            elif colormap:
                dst.write_colormap(1, colormap)
            dst.set_band_description(1, "dune class (255 = nodata)")
            if confidence:
                dst.set_band_description(2, "confidence: blended max probability x 100")
        bands = src.count
    if colormap and class_names:  # GDAL category names + RAT, QGIS style, beside the map
        from shared.rasters import write_class_sidecars

        stats["sidecars"] = [str(p) for p in write_class_sidecars(output_tif, class_names,
                                                                   colormap)]
    stats.update({
        "input": str(input_tif), "output": str(output_tif), "height": H, "width": W,
        "bands": bands, "dtype": dtype.name, "tile_size": tile_size, "stride": stride,
        "batch_size": batch_size, "margin": margin, "windows_total": total,
        "reader": type(reader).__name__,
        "wall_s": round(time.time() - t_start, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    })
    return stats


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import (
        add_precision_argument,
        add_progress_argument,
        finish_parser,
        hidden_alias,
    )
    from shared.runs import positive_int

    p = argparse.ArgumentParser(
        prog="dunes-map",
        description="Sliding-window classification of a huge 64-band GeoTIFF into a uint8 "
                    "dune-class GeoTIFF (same CRS/transform, nodata 255, colour table, class "
                    "names, and a QGIS style .qml beside it), in bounded memory: a ring of input "
                    "rows (each file block decoded once), or window by window above "
                    "--max-rows-mb.")
    p.add_argument("input_tif", nargs="?", metavar="INPUT", default=argparse.SUPPRESS,
                   help="64-band embedding GeoTIFF")
    hidden_alias(p, "--input_tif", "--input-tif", dest="input_tif")
    p.add_argument("--out", dest="output_tif", metavar="OUT_TIF",
                   help="classification GeoTIFF to write (required)")
    hidden_alias(p, "--output_tif", "--output-tif", dest="output_tif")
    p.add_argument("--model", dest="weights", metavar="PATH",
                   help="trained weights (required): our checkpoint (best.pt) or a reference "
                        "best_model.pth")
    hidden_alias(p, "--weights", dest="weights")
    p.add_argument("--text-embeds", dest="text_embed_path", metavar="NPY",
                   help="(classes, D) .npy; default: stored in our checkpoint; required for a "
                        "reference fusion file; an error for the baseline")
    hidden_alias(p, "--text_embed_path", dest="text_embed_path")
    p.add_argument("--tile-size", dest="tile_size", type=int, default=512,
                   help="model window (multiple of 32)")
    hidden_alias(p, "--tile_size", dest="tile_size", type=int)
    p.add_argument("--stride", type=int, default=None,
                   help="window step (default: tile size - overlap)")
    p.add_argument("--overlap", type=int, default=256, help="window overlap in pixels")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=4,
                   help="windows per forward pass")
    hidden_alias(p, "--batch_size", dest="batch_size", type=positive_int)
    p.add_argument("--confidence", action="store_true", help="add a confidence band")
    p.add_argument("--input-scale", dest="input_scale", type=float, default=None,
                   help="multiply input values (default: 1/127 for integer rasters, else 1)")
    hidden_alias(p, "--input_scale", dest="input_scale", type=float)
    p.add_argument("--nodata", type=float, default=None,
                   help="input nodata value (default: from the file)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps; a device "
                   "that is not there is an error")
    add_precision_argument(p)
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--max-rows-mb", dest="max_rows_mb", type=int, default=MAX_ROWS_MB,
                   help="memory for the input rows held in a ring (each block decoded once); "
                        "above it, windows are read one by one")
    hidden_alias(p, "--max_rows_mb", dest="max_rows_mb", type=int)
    add_progress_argument(p)
    return finish_parser(p)


def _main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    for dest, flag in (("input_tif", "INPUT"), ("output_tif", "--out"), ("weights", "--model")):
        if getattr(args, dest, None) is None:
            p.error(f"{flag} is required")
    import torch

    from dune_vlm.checkpoint import load_model_for_inference
    from dune_vlm.utils.config import class_colors, class_names
    from shared.runs import check_not_inputs, check_output_dir
    from shared.torch_runtime import pick_device, precision_for

    torch.set_num_threads(max(1, args.threads))
    check_not_inputs([args.output_tif], [args.input_tif, args.weights, args.text_embed_path])
    check_output_dir(Path(args.output_tif).parent)
    stride = args.stride if args.stride is not None else args.tile_size - args.overlap
    dev = pick_device(args.device)
    model, text, _ = load_model_for_inference(args.weights, args.text_embed_path, dev)
    colors = {k: (*c, 255) for k, c in class_colors().items()}
    from shared.cli import progress_enabled

    with precision_for(args.precision, dev).autocast():
        stats = predict_raster(
            args.input_tif, args.output_tif, model, text, tile_size=args.tile_size,
            stride=stride, batch_size=args.batch_size, device=dev,
            confidence=args.confidence, input_scale=args.input_scale, nodata=args.nodata,
            colormap=colors, class_names=class_names(),
            progress=progress_enabled(args.no_progress),
            max_rows_mb=args.max_rows_mb)
    print(f"wrote {stats['output']}: {stats['width']}x{stats['height']}, "
          f"{stats['windows_predicted']} windows predicted "
          f"({stats['windows_skipped_nodata']} all-nodata skipped, {stats['reader']}), "
          f"{stats['wall_s']} s, "
          f"peak RSS {stats['peak_rss_mb']} MB")
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
