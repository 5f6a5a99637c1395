"""Peak memory of ``inference_tile`` on large generated 64-band GeoTIFFs.

Generates a square 64-band raster window by window (int8 like a quantised Google Satellite
Embedding export, or float32; never the whole array in memory), then maps it in a fresh child
process and reports that process's peak resident set size (``ru_maxrss``) and wall time.

Models: ``--weights best.pt`` (a trained dune_vlm checkpoint), ``--model paper`` (the full
22,021,834-parameter fusion model, random weights: same memory, no training needed) or
``--model pixel`` (a 1x1-convolution stand-in whose compute is negligible: it isolates the
streaming, blending and writing machinery, so that rasters of 8,192 x 8,192 can be measured on
a CPU in minutes). Generated rasters go under ``datasets/dune_vlm/memory/`` (gitignored).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from shared.cli import progress_enabled

INT8_NODATA = -128


def make_raster(path: Path, size: int, dtype: str = "int8", seed: int = 0,
                chunk: int = 512, progress: bool = True) -> Path:
    """A (64, size, size) GeoTIFF of quantised unit vectors with a nodata border strip."""
    from rasterio.crs import CRS
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from tqdm import tqdm

    from shared.rasters import geotiff_writer

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(4):  # a few distinct blocks, reused with rolls: fast to generate
        v = rng.normal(size=(64, chunk, chunk)).astype(np.float32)
        v /= np.linalg.norm(v, axis=0, keepdims=True)
        pool.append(v)
    nodata = INT8_NODATA if dtype == "int8" else -9999.0
    with geotiff_writer(path, width=size, height=size, count=64, dtype=dtype,
                        crs=CRS.from_epsg(32733), transform=from_origin(420000, 7330000, 10, 10),
                        nodata=nodata, compress="lzw", blocksize=256) as dst:
        wins = [(r, c) for r in range(0, size, chunk) for c in range(0, size, chunk)]
        for i, (r, c) in enumerate(tqdm(wins, desc=f"write {size}^2", disable=not progress)):
            h, w = min(chunk, size - r), min(chunk, size - c)
            v = np.roll(pool[i % 4], i % 97, axis=2)[:, :h, :w]
            block = np.clip(np.rint(v * 127), -127, 127).astype(np.int8) if dtype == "int8" \
                else v.astype(np.float32)
            if c == 0:
                block[:, :, : min(w, 64)] = nodata  # a nodata strip on the west edge
            dst.write(block, window=Window(c, r, w, h))
    return path


def _child(args) -> dict:
    import torch

    from dune_vlm.inference_tile import predict_raster

    torch.set_num_threads(max(1, args.threads))
    text = None
    if args.weights:
        from dune_vlm.checkpoint import load_model_for_inference

        model, text, _ = load_model_for_inference(args.weights, args.text_embed_path, "cpu")
    elif args.model == "paper":
        from dune_vlm.models.fusion import build_fusion_model

        model = build_fusion_model(10, 512).eval()
        text = torch.nn.functional.normalize(torch.randn(10, 512), dim=1)
    else:
        class Pixel(torch.nn.Module):
            in_chans = 64

            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(64, 10, 1)

            def forward(self, x, text=None):
                return self.conv(x)

        torch.manual_seed(0)
        model = Pixel().eval()
    stats = predict_raster(args.input_tif, args.output_tif, model, text,
                           tile_size=args.tile_size, stride=args.stride,
                           batch_size=args.batch_size, confidence=args.confidence,
                           progress=progress_enabled(args.no_progress),
                           max_rows_mb=args.max_rows_mb)
    stats["model"] = args.weights or args.model
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dunes-measure-memory",
        description="Measure peak RSS of inference_tile on generated 64-band rasters of the "
                    "given sizes (each mapped in a fresh process).")
    from shared.runs import declare_paths, nonnegative_int, positive_int

    p.add_argument("--sizes", type=positive_int, nargs="+", default=[2048, 8192],
                   help="raster sides in pixels (default: 2048 8192)")
    p.add_argument("--dtype", default="int8", choices=["int8", "float32"],
                   help="data type of the generated rasters")
    p.add_argument("--model", default="pixel", choices=["pixel", "paper"],
                   help="stand-in model when no --weights is given")
    p.add_argument("--weights", help="a trained dune_vlm checkpoint instead of a stand-in")
    p.add_argument("--text_embed_path", help="(classes, D) .npy for a reference fusion file")
    p.add_argument("--tile_size", type=positive_int, default=512, help="model window")
    p.add_argument("--stride", type=positive_int, default=256, help="window step")
    p.add_argument("--batch_size", type=positive_int, default=4, help="windows per forward")
    p.add_argument("--max_rows_mb", type=nonnegative_int, default=1024,
                   help="inference_tile's budget for its row reader (0: window by window)")
    p.add_argument("--confidence", action="store_true", help="add the confidence band")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--workdir", default="datasets/dune_vlm/memory",
                   help="where rasters are generated (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the generated rasters")
    p.add_argument("--out", help="JSON file for the results")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    # internal: run one mapping in this process
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--input_tif", help=argparse.SUPPRESS)
    p.add_argument("--output_tif", help=argparse.SUPPRESS)
    # issue 27: no output may be, hold or lie inside an input (--out onto --weights)
    from shared.cli import finish_parser

    return declare_paths(finish_parser(p), inputs=["weights", "text_embed_path", "input_tif"],
                         outputs=["out", "output_tif"], folders=["workdir"])


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        stats = _child(args)
        stats["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                     1)
        print("RESULT " + json.dumps(stats))
        return 0
    if args.weights and not Path(args.weights).is_file():
        print(f"error: {args.weights}: checkpoint not found", file=sys.stderr)
        return 2
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        src = work / f"embedding_{size}_{args.dtype}.tif"
        if not src.is_file():
            t0 = time.time()
            make_raster(src, size, args.dtype, progress=progress_enabled(args.no_progress))
            print(f"generated {src} ({src.stat().st_size / 2**20:.0f} MiB, "
                  f"{time.time() - t0:.0f} s)")
        out = work / f"map_{size}.tif"
        cmd = [sys.executable, "-m", "dune_vlm.measure_memory", "--child", "--input_tif",
               str(src), "--output_tif", str(out), "--model", args.model, "--tile_size",
               str(args.tile_size), "--stride", str(args.stride),
               "--batch_size", str(args.batch_size), "--threads", str(args.threads),
               "--max_rows_mb", str(args.max_rows_mb)]
        if args.weights:
            cmd += ["--weights", args.weights]
        if args.text_embed_path:
            cmd += ["--text_embed_path", args.text_embed_path]
        if args.confidence:
            cmd.append("--confidence")
        if not progress_enabled(args.no_progress):
            cmd.append("--no-progress")
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 2:  # the child's one-line user error, without what torch printed
            errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
            print(errors[-1] if errors else proc.stderr[-2000:].rstrip(), file=sys.stderr)
            return 2
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
        stats = json.loads(line[len("RESULT "):])
        stats["process_wall_s"] = round(time.time() - t0, 1)
        stats["input_mib"] = round(src.stat().st_size / 2**20, 1)
        results.append(stats)
        print(f"{size}x{size} {args.dtype}: peak RSS {stats['peak_rss_mb']} MB, "
              f"{stats['windows_predicted']} windows, {stats['process_wall_s']} s")
        if not args.keep:
            src.unlink()
            out.unlink(missing_ok=True)
    if len(results) > 1:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        print(f"peak RSS ratio largest/smallest: {ratio:.3f}")
    if args.out:
        from shared.atomic import atomic_write_json

        atomic_write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
