"""Map a huge 64-band GeoTIFF with sliding-window inference, window by window.

The raster is never loaded whole. It is processed in output blocks (``--block`` pixels square);
for each block every model window (``--tile_size``, ``--stride``) that touches it is read from
disk, predicted in batches, and its softmax probabilities are blended into the block with a
smooth weight: zero in a margin of ``overlap/4`` along window sides that lie inside the raster
(where a window lacks context), then a cosine ramp up to 1, and full weight on sides that lie on
the raster border. Neighbouring windows' weights overlap, so the blend has no seams, and a model
whose receptive field is within the margin gives exactly its whole-image prediction. A window
touching two blocks is predicted for each (bounded memory at the cost of some recomputation).

Output: a tiled, deflate-compressed uint8 GeoTIFF with the input's CRS and transform, class
indexes, 255 where the input is nodata, an embedded class colour table and, with
``--confidence``, a second band holding the blended maximum probability x 100.
Memory depends on tile, batch and block sizes, not on the raster size.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

NODATA_OUT = 255


class TileInferenceError(ValueError):
    pass


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window offsets covering ``length``; the last one is shifted back to end at the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


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


def predict_raster(
    input_tif, output_tif, model, text=None, *, tile_size: int = 512, stride: int = 256,
    block: int = 2048, batch_size: int = 4, device="cpu", confidence: bool = False,
    input_scale: float | None = None, nodata: float | None = None, colormap=None,
    margin: int | None = None, progress: bool = True, gdal_cache_mb: int = 128,
) -> dict:
    """Classify ``input_tif`` into ``output_tif``; returns run statistics (windows, peak RSS)."""
    import rasterio
    import torch
    from rasterio.windows import Window
    from tqdm import tqdm

    from shared.rasters import RasterError, geotiff_writer, read_window

    input_tif, output_tif = Path(input_tif), Path(output_tif)
    if tile_size <= 0 or tile_size % 32:
        raise TileInferenceError(f"tile size must be a positive multiple of 32, got {tile_size}")
    if not 0 < stride <= tile_size:
        raise TileInferenceError(f"stride must be in 1..tile size ({tile_size}), got {stride}")
    if batch_size < 1 or block < 1:
        raise TileInferenceError("batch size and block must be positive")
    if not input_tif.is_file():
        raise TileInferenceError(f"{input_tif}: file not found")
    overlap = tile_size - stride
    margin = overlap // 4 if margin is None else int(margin)
    if overlap and 2 * margin > overlap:
        raise TileInferenceError(f"margin {margin} too large for overlap {overlap}")
    ramp = max(overlap - 2 * margin, 1)
    in_chans = getattr(model, "in_chans", None)
    t_start = time.time()
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb):
        try:
            src = rasterio.open(input_tif)
        except rasterio.errors.RasterioIOError as exc:
            raise TileInferenceError(f"{input_tif}: not a readable raster ({exc})") from None
        with src:
            if in_chans is not None and src.count != in_chans:
                raise TileInferenceError(f"{input_tif}: has {src.count} bands, the model expects "
                                         f"{in_chans}")
            if src.crs is None:
                raise TileInferenceError(f"{input_tif}: has no CRS (a georeferenced export is "
                                         "needed to write a map)")
            nd = nodata if nodata is not None else src.nodata
            dtype = np.dtype(src.dtypes[0])
            scale = input_scale if input_scale is not None else \
                (1.0 / 127.0 if dtype.kind in "iu" else 1.0)
            H, W = src.height, src.width
            rows, cols = window_starts(H, tile_size, stride), window_starts(W, tile_size, stride)
            num_classes = None
            # window weights (row part, col part) depend only on which sides touch the border
            stats = {"windows_predicted": 0, "windows_skipped_nodata": 0, "blocks": 0}
            blocks = [(r0, c0) for r0 in range(0, H, block) for c0 in range(0, W, block)]

            def touching(r0, c0):
                r1, c1 = min(r0 + block, H), min(c0 + block, W)
                out = []
                for r in rows:
                    top, bot = r > 0, r + tile_size < H
                    rz0 = r + (margin if top else 0)
                    rz1 = min(r + tile_size, H) - (margin if bot else 0)
                    if rz1 <= r0 or rz0 >= r1:
                        continue
                    for c in cols:
                        left, right = c > 0, c + tile_size < W
                        cz0 = c + (margin if left else 0)
                        cz1 = min(c + tile_size, W) - (margin if right else 0)
                        if cz1 <= c0 or cz0 >= c1:
                            continue
                        out.append((r, c, top, bot, left, right))
                return out

            plan = [(b, touching(*b)) for b in blocks]
            total = sum(len(p) for _, p in plan)
            extra_bands = 2 if confidence else 1
            with geotiff_writer(output_tif, width=W, height=H, count=extra_bands, dtype="uint8",
                                crs=src.crs, transform=src.transform, nodata=NODATA_OUT,
                                blocksize=256) as dst:
                bar = tqdm(total=total, desc="windows", unit="win", disable=not progress)
                for (r0, c0), wins in plan:
                    r1, c1 = min(r0 + block, H), min(c0 + block, W)
                    bh, bw = r1 - r0, c1 - c0
                    acc = None
                    wsum = np.zeros((bh, bw), np.float32)
                    invalid = np.ones((bh, bw), bool)
                    for i in range(0, len(wins), batch_size):
                        chunk = wins[i:i + batch_size]
                        xs, keep = [], []
                        for r, c, top, bot, left, right in chunk:
                            try:
                                raw = read_window(src, Window(c, r, tile_size, tile_size),
                                                  fill_value=nd if nd is not None else 0)
                            except RasterError as exc:
                                raise TileInferenceError(str(exc)) from None
                            x, bad = _to_float(raw, nd, scale)
                            # record input validity inside this block
                            ir0, ir1 = max(r, r0), min(r + tile_size, r1)
                            ic0, ic1 = max(c, c0), min(c + tile_size, c1)
                            if ir1 > ir0 and ic1 > ic0:
                                invalid[ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0] &= \
                                    bad[ir0 - r:ir1 - r, ic0 - c:ic1 - c]
                            if bad.all():
                                stats["windows_skipped_nodata"] += 1
                                continue
                            xs.append(x)
                            keep.append((r, c, top, bot, left, right, bad))
                        bar.update(len(chunk))
                        if not xs:
                            continue
                        with torch.inference_mode():
                            xb = torch.from_numpy(np.stack(xs)).to(device)
                            prob = torch.softmax(model(xb, text).float(), dim=1).cpu().numpy()
                        del xb
                        stats["windows_predicted"] += len(xs)
                        if acc is None:
                            num_classes = prob.shape[1]
                            acc = np.zeros((num_classes, bh, bw), np.float32)
                        for p, (r, c, top, bot, left, right, bad) in zip(prob, keep):
                            wr = side_weight(tile_size, margin, ramp, top, bot)
                            wc = side_weight(tile_size, margin, ramp, left, right)
                            w = np.outer(wr, wc).astype(np.float32)
                            w[bad] = 0.0
                            ir0, ir1 = max(r, r0), min(r + tile_size, r1)
                            ic0, ic1 = max(c, c0), min(c + tile_size, c1)
                            if ir1 <= ir0 or ic1 <= ic0:
                                continue
                            sub_w = w[ir0 - r:ir1 - r, ic0 - c:ic1 - c]
                            acc[:, ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0] += \
                                p[:, ir0 - r:ir1 - r, ic0 - c:ic1 - c] * sub_w
                            wsum[ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0] += sub_w
                    cls = np.full((bh, bw), NODATA_OUT, np.uint8)
                    conf = np.zeros((bh, bw), np.uint8)
                    if acc is not None:
                        ok = (wsum > 0) & ~invalid
                        cls[ok] = acc[:, ok].argmax(axis=0).astype(np.uint8)
                        if confidence:
                            best = acc[:, ok].max(axis=0) / wsum[ok]
                            conf[ok] = np.clip(np.rint(best * 100), 0, 100).astype(np.uint8)
                    if confidence:
                        conf[cls == NODATA_OUT] = NODATA_OUT
                    win = Window(c0, r0, bw, bh)
                    dst.write(cls, 1, window=win)
                    if confidence:
                        dst.write(conf, 2, window=win)
                    stats["blocks"] += 1
                    del acc, wsum, invalid
                bar.close()
                if colormap:
                    dst.write_colormap(1, colormap)
                dst.set_band_description(1, "dune class (255 = nodata)")
                if confidence:
                    dst.set_band_description(2, "confidence: blended max probability x 100")
    stats.update({
        "input": str(input_tif), "output": str(output_tif), "height": H, "width": W,
        "bands": src.count, "dtype": dtype.name, "tile_size": tile_size, "stride": stride,
        "block": block, "batch_size": batch_size, "margin": margin,
        "windows_total": total, "num_classes": num_classes,
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
    p.add_argument("--block", type=int, default=2048, help="output block side in pixels")
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
        stride=stride, block=args.block, batch_size=args.batch_size, device=dev,
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
