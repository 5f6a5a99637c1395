"""Framework-free benchmark child: HiRISE chunking and crack-network analysis.

Run by ``bench/run.py`` as ``python -m bench.io_bench <task> --json OUT``; imports neither torch
nor tensorflow.

Tasks
- ``ice_chunk``: ``ice_patch_cnn.chunk.iter_chunks`` (read, grayscale, no-data test, 8-bit) and
  ``chunk_image`` (the same plus PNG files) on a large single-band GeoTIFF, against a bare
  rasterio read of the same windows: MB/s of raw input and peak RSS.
- ``crack_analysis``: ``analyze_mask`` of Mars-CrackNet on a crack mask (4,096 x 4,096 in the
  full run), seconds per megapixel, beside ``skimage.morphology.skeletonize`` of the same mask
  (the first step any such analysis needs) as a reference.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    NOT_BUILT,
    REPO_ROOT,
    WORK_DIR,
    NotBuilt,
    need,
    parse_size,
    run_child,
    time_reps,
)


# ------------------------------------------------------------------------------- ice chunks
def _write_gray(path: Path, h: int, w: int, seed: int = 0) -> Path:
    """A deflate-compressed tiled uint8 GeoTIFF with a no-data border (like map products)."""
    if path.is_file():
        return path
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from shared.rasters import geotiff_writer

    rng = np.random.default_rng(seed)
    border = max(8, w // 64)
    with geotiff_writer(path, width=w, height=h, count=1, dtype="uint8", nodata=0,
                        crs="EPSG:4326", transform=from_origin(0, 0, 1e-5, 1e-5)) as dst:
        step = 512
        for r in range(0, h, step):
            rh = min(step, h - r)
            coarse = rng.integers(60, 200, (rh // 8 + 1, w // 8 + 1), dtype=np.uint8)
            block = np.kron(coarse, np.ones((8, 8), np.uint8))[:rh, :w]
            block = block + rng.integers(0, 20, block.shape, dtype=np.uint8)
            block[:, :border] = 0
            block[:, w - border:] = 0
            dst.write(block[None], window=Window(0, r, w, rh))
    return path


def task_ice_chunk(args: argparse.Namespace) -> dict[str, Any]:
    import rasterio
    from rasterio.windows import Window

    chunk = need("ice_patch_cnn.chunk")
    iter_chunks = need("ice_patch_cnn.chunk", "iter_chunks")
    ChunkSpec = need("ice_patch_cnn.chunk", "ChunkSpec")
    chunk_image = need("ice_patch_cnn.chunk", "chunk_image")
    size = 128 if args.quick else 1024
    h, w = parse_size(args.size, (512, 512) if args.quick else (8192, 8192))
    src = _write_gray(WORK_DIR / "ice_patch_cnn" / f"hirise_like_{h}x{w}.tif", h, w)
    spec = ChunkSpec(size=size)
    raw_mb = h * w / 1e6  # one uint8 band
    cache_mb = getattr(chunk, "GDAL_CACHE_MB", 64)
    windows = [(r, c) for r in range(0, h, size) for c in range(0, w, size)]

    def bare():
        with rasterio.Env(GDAL_CACHEMAX=cache_mb), rasterio.open(src) as ds:
            for r, c in windows:
                inside = r + size <= h and c + size <= w
                ds.read(1, window=Window(c, r, size, size), boundless=not inside,
                        fill_value=0)

    def chunks_only():
        n = 0
        for ch in iter_chunks(src, spec):
            n += ch.pixels is not None
        return n

    out_dir = WORK_DIR / "ice_patch_cnn" / "chunks_out"

    def chunks_png():
        shutil.rmtree(out_dir, ignore_errors=True)
        chunk_image(src, out_dir, spec, overwrite=True)

    kept = chunks_only()
    res: dict[str, Any] = {"image": f"{h}x{w} uint8 deflate GeoTIFF with a no-data border",
                           "height": h, "width": w, "chunk": size, "windows": len(windows),
                           "kept_chunks": int(kept), "raw_mb": raw_mb}
    # interleave the three so that machine noise hits them alike
    times: dict[str, list[float]] = {"bare": [], "iter_chunks": [], "chunk_image": []}
    fns = {"bare": bare, "iter_chunks": chunks_only, "chunk_image": chunks_png}
    for _ in range(args.warmup):
        for fn in fns.values():
            fn()
    for _ in range(args.reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    import statistics

    for name, ts in times.items():
        med = statistics.median(ts)
        res[name] = {"median_s": med, "times_s": [round(t, 4) for t in ts],
                     "mb_per_s": raw_mb / med}
    shutil.rmtree(out_dir, ignore_errors=True)
    return res


def task_ice_rss(args: argparse.Namespace) -> dict[str, Any]:
    """Only iter_chunks over an image, once: this process's peak RSS is the measurement."""
    iter_chunks = need("ice_patch_cnn.chunk", "iter_chunks")
    ChunkSpec = need("ice_patch_cnn.chunk", "ChunkSpec")
    size = 128 if args.quick else 1024
    h, w = parse_size(args.size, (512, 512) if args.quick else (8192, 8192))
    src = _write_gray(WORK_DIR / "ice_patch_cnn" / f"hirise_like_{h}x{w}.tif", h, w)
    t0 = time.perf_counter()
    n = sum(1 for _ in iter_chunks(src, ChunkSpec(size=size)))
    wall = time.perf_counter() - t0
    return {"height": h, "width": w, "chunk": size, "chunks": n, "wall_s": wall,
            "mb_per_s": h * w / 1e6 / wall}


# ---------------------------------------------------------------------------- crack masks
def crack_mask(size: int, cells: int, seed: int = 0, width: int = 3) -> np.ndarray:
    """A polygonal crack network (Voronoi cell borders), uint8 0/255."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    low = max(64, size // 4)
    pts = rng.random((cells, 2)) * low
    yy, xx = np.mgrid[0:low, 0:low]
    _, lab = cKDTree(pts).query(np.column_stack([yy.ravel(), xx.ravel()]))
    lab = lab.reshape(low, low)
    rep = size // low
    lab = np.kron(lab, np.ones((rep, rep), lab.dtype))
    edge = np.zeros(lab.shape, bool)
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge = ndimage.binary_dilation(edge, iterations=max(1, width // 2))
    return (edge * 255).astype(np.uint8)


def find_analyze_mask():
    """``analyze_mask`` wherever Mars-CrackNet defines it (the module name is theirs to pick)."""
    pkg = REPO_ROOT / "mars_cracknet"
    if not pkg.is_dir():
        raise NotBuilt("mars_cracknet is not there")
    for path in sorted(pkg.rglob("*.py")):
        if "tests" in path.relative_to(pkg).parts:
            continue
        if re.search(r"^def analyze_mask\(", path.read_text(encoding="utf-8"), re.M):
            module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            try:
                return module, importlib.import_module(module).analyze_mask
            except ImportError as exc:
                raise NotBuilt(f"{module} is not importable ({exc})") from None
    raise NotBuilt("no analyze_mask function in mars_cracknet yet")


def task_crack_analysis(args: argparse.Namespace) -> dict[str, Any]:
    from skimage.morphology import skeletonize

    size = int(args.size) if args.size else (512 if args.quick else 4096)
    mask = crack_mask(size, cells=max(16, (size // 64) ** 2 // 4))
    mpx = size * size / 1e6
    res: dict[str, Any] = {"mask": f"{size}x{size} polygonal crack network (Voronoi borders, "
                                   "about 3 px wide)", "size": size,
                           "crack_fraction": float((mask > 0).mean())}
    sk = time_reps(lambda: skeletonize(mask > 0), 0, args.reps)
    res["skeletonize"] = {**sk, "s_per_mpx": sk["median_s"] / mpx}
    try:
        module, analyze = find_analyze_mask()
    except NotBuilt as exc:  # keep the reference numbers
        return {**res, "status": NOT_BUILT, "reason": str(exc)}
    res["module"] = module
    if args.quick:  # the first call JIT-compiles skan's numba kernels: tens of seconds
        res["analyze_mask"] = {"skipped": "quick mode: analyze_mask found but not timed (its "
                                          "first call JIT-compiles skan's numba kernels)"}
        return res
    summary: dict[str, Any] = {}

    def run(m=mask):
        nonlocal summary
        out = analyze(m)
        summary = out if isinstance(out, dict) else {}

    t0 = time.perf_counter()
    run(crack_mask(256, cells=16))  # warm-up on a small mask: numba compilation happens here
    res["first_call_256px_s"] = round(time.perf_counter() - t0, 2)
    t = time_reps(run, 0, args.reps)  # one call is long: no further warm-up
    res["analyze_mask"] = {**t, "s_per_mpx": t["median_s"] / mpx}
    res["analyze_mask_keys"] = sorted(str(k) for k in summary)[:30]
    res["profile"] = profile_call(run)
    return res


def profile_call(fn, top: int = 8) -> dict[str, Any]:
    """One more (untimed) call under cProfile: where the time goes, by cumulative time."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    st = pstats.Stats(prof)
    total = max(st.total_tt, 1e-12)
    rows = []
    for (path, line, name), (_cc, ncalls, _tt, ct, _callers) in st.stats.items():
        if name.startswith("<") or "cProfile" in path:
            continue
        where = path.split("site-packages/")[-1].replace(str(Path.cwd()) + "/", "")
        rows.append({"function": f"{where}:{line}({name})", "calls": ncalls,
                     "cumulative_s": round(ct, 4), "share": round(ct / total, 3)})
    rows.sort(key=lambda r: -r["cumulative_s"])
    return {"total_s": round(total, 3), "top": rows[1:top + 1]}  # [0] is the call itself


TASKS = {"ice_chunk": task_ice_chunk, "ice_rss": task_ice_rss,
         "crack_analysis": task_crack_analysis}


def main(argv: list[str] | None = None) -> int:
    return run_child(TASKS, "Framework-free benchmark child of bench/run.py (chunking, crack "
                            "analysis).", argv)


if __name__ == "__main__":
    sys.exit(main())
