"""Map a huge 64-band GeoTIFF with sliding-window inference, in bounded memory.

The tiling is the one engine of the project, :mod:`shared.engine`: windows of ``--tile-size``
every ``--stride`` px planned on the ``shared.tiles`` grid and predicted exactly once each, in
batches; the input read from a :class:`shared.rasters.Scene` by
:class:`shared.engine.RowRingReader` (the rows of the current window row over the whole width
in a ring, in the file's dtype, each block of the file decoded once, the next rows in a
background thread while the model predicts), or window by window
(:class:`shared.engine.SceneReader`) where that ring would exceed ``--max-rows-mb``; the softmax
probabilities blended with the engine's weight, and the rows no later window touches written
to the output GeoTIFF strip by strip. This module keeps only what is the dune mapper's own: the
scaling of quantised inputs, the "any band equals nodata" rule, the model call, and the
encoding of the map.

The default blend is ``cosine`` with a margin (the rule this mapper had before the engine):
zero in a margin of ``overlap/4`` along window sides that lie inside the raster (where a window
lacks context), then a cosine ramp up to 1, and full weight on sides on the raster border, so
the blend has no seams and a model whose receptive field is within the margin gives exactly its
whole-image prediction.

Output: a tiled, deflate-compressed uint8 GeoTIFF with the input's CRS and transform, class
indexes, 255 where the input is nodata, an embedded class colour table and, with
``--confidence``, a second band holding the blended maximum probability x 100. Memory: the
input ring, ``bands x (tile + stride) x width`` of the file's dtype, the engine's strip,
``classes x tile_size x width`` float32, and a batch of windows (independent of the raster's
height).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from pathlib import Path

import numpy as np

from shared.engine import BLENDS
from shared.errors import UserError

NODATA_OUT = 255
MAX_ROWS_MB = 1024  # the ring's budget; its cost and pay-off: README, "Memory"
DEFAULT_BLEND = "cosine"  # the dune mapper's rule before the engine (cosine ramp after a margin)


class TileInferenceError(UserError):
    pass


def _check_args(input_tif: Path, tile_size: int, stride: int, batch_size: int,
                margin: int | None, blend: str) -> int | None:
    if tile_size <= 0 or tile_size % 32:
        raise TileInferenceError(f"tile size must be a positive multiple of 32, got {tile_size}")
    if not 0 < stride <= tile_size:
        raise TileInferenceError(f"stride must be in 1..tile size ({tile_size}), got {stride}")
    if batch_size < 1:
        raise TileInferenceError("batch size must be positive")
    if blend not in BLENDS:
        raise TileInferenceError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    if not input_tif.is_file():
        raise TileInferenceError(f"{input_tif}: file not found")
    overlap = tile_size - stride
    if margin is not None and overlap and 2 * int(margin) > overlap:
        raise TileInferenceError(f"margin {margin} too large for overlap {overlap}")
    return None if margin is None else int(margin)


def _open_input(input_tif: Path, in_chans):
    from shared.rasters import RasterError, open_scene

    try:
        scene = open_scene(input_tif)
    except RasterError as exc:
        raise TileInferenceError(str(exc)) from None
    if in_chans is not None and scene.count != in_chans:
        scene.close()
        raise TileInferenceError(f"{input_tif}: has {scene.count} bands, the model expects "
                                 f"{in_chans}")
    if scene.crs is None:
        scene.close()
        raise TileInferenceError(f"{input_tif}: has no CRS (a georeferenced export is needed "
                                 "to write a map)")
    return scene


def make_predict_fn(model, text, device, scale: float):
    """The engine's callback: a batch (n, bands, tile, tile) of the file's values (zero where
    not data) -> softmax probabilities (n, C, tile, tile). The batch is scaled in place."""
    import torch

    def predict_fn(xb: np.ndarray) -> np.ndarray:
        if scale != 1.0:
            np.multiply(xb, np.float32(scale), out=xb)
        with torch.inference_mode():
            logits = model(torch.from_numpy(xb).to(device), text)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    return predict_fn


def encode_map(confidence: bool):
    """The engine's GeoTIFF encoding: (classes, n, W) probabilities (NaN where invalid) ->
    class index (first maximum wins), 255 where invalid, and the max probability x 100."""

    def encode(prob: np.ndarray, valid: np.ndarray) -> np.ndarray:
        n, width = valid.shape
        out = np.full((2 if confidence else 1, n, width), NODATA_OUT, np.uint8)
        if valid.any():
            best, arg = np.where(valid, prob[0], -1.0), np.zeros((n, width), np.uint8)
            for c in range(1, len(prob)):
                np.copyto(arg, np.uint8(c), where=prob[c] > best)
                np.maximum(best, prob[c], out=best, where=valid)
            out[0][valid] = arg[valid]
            if confidence:
                out[1][valid] = np.clip(np.rint(best[valid] * 100), 0, 100).astype(np.uint8)
        return out

    return encode


def predict_raster(
    input_tif, output_tif, model, text=None, *, tile_size: int = 512, stride: int = 256,
    batch_size: int = 4, device="cpu", confidence: bool = False,
    input_scale: float | None = None, nodata: float | None = None, colormap=None,
    class_names: list[str] | None = None, margin: int | None = None,
    blend: str = DEFAULT_BLEND, progress: bool = True, max_rows_mb: int = MAX_ROWS_MB,
) -> dict:
    """Classify ``input_tif`` into ``output_tif`` with :func:`shared.engine.run` (one scene,
    one call); returns run statistics (windows planned and predicted, the reader, peak RSS).

    ``blend`` is the engine's weight (default cosine, with ``margin`` px of zero weight,
    default overlap // 4). The input is read by a ``RowRingReader`` (each block decoded once)
    unless its rows would take more than ``max_rows_mb``; then window by window."""
    import rasterio

    from shared.engine import Blend, GeoTIFFWriter, RowRingReader, SceneReader, run
    from shared.rasters import RasterError, nodata_mask

    input_tif, output_tif = Path(input_tif), Path(output_tif)
    margin = _check_args(input_tif, tile_size, stride, batch_size, margin, blend)
    if input_scale is not None and not (np.isfinite(input_scale) and input_scale > 0):
        raise TileInferenceError(f"--input-scale {input_scale}: expected a positive finite "
                                 "number (nan or 0 gives a map of one class)")  # issue 27
    t_start = time.time()
    # the ring decodes each block once: GDAL's block cache would only hold copies
    with rasterio.Env(GDAL_CACHEMAX=64), \
            _open_input(input_tif, getattr(model, "in_chans", None)) as scene:
        H, W = scene.height, scene.width
        nd = nodata if nodata is not None else scene.file_nodata
        dtype = np.dtype(scene.dtype)
        scale = input_scale if input_scale is not None else \
            (1.0 / 127.0 if dtype.kind in "iu" else 1.0)

        def invalid(raw):  # a pixel with any band at nodata is not data
            return nodata_mask(raw, nd, any_band=True)

        if RowRingReader.nbytes(scene, tile_size, stride) <= max_rows_mb * 2**20:
            reader = RowRingReader(scene, tile_size, stride, invalid=invalid)
        else:
            reader = SceneReader(scene, uint8=False, invalid=invalid)
        writer = GeoTIFFWriter(output_tif, width=W, height=H, count=2 if confidence else 1,
                               dtype="uint8", crs=scene.crs, transform=scene.transform,
                               nodata=NODATA_OUT, encode=encode_map(confidence), blocksize=256)
        try:
            with contextlib.ExitStack() as stack:
                if hasattr(reader, "close"):  # the ring's background thread
                    stack.callback(reader.close)
                stack.enter_context(writer)
                stats = run(reader, make_predict_fn(model, text, device, scale), H, W,
                            tile_size, [writer], stride=stride, edge="shift",
                            blend=Blend(blend, margin=margin), batch_size=batch_size,
                            skip_empty=True, progress=progress)
                _describe(writer.dataset, colormap, class_names, confidence)
        except RasterError as exc:
            raise TileInferenceError(str(exc)) from None
        bands = scene.count
    out = {"windows_predicted": stats.windows_predicted,
           "windows_skipped_nodata": stats.windows_skipped, "num_classes": stats.classes}
    if colormap and class_names:  # GDAL category names + RAT, QGIS style, beside the map
        from shared.rasters import write_class_sidecars

        out["sidecars"] = [str(p) for p in write_class_sidecars(output_tif, class_names,
                                                                 colormap)]
    out.update({
        "input": str(input_tif), "output": str(output_tif), "height": H, "width": W,
        "bands": bands, "dtype": dtype.name, "tile_size": tile_size, "stride": stride,
        "batch_size": batch_size, "blend": blend,
        "margin": (tile_size - stride) // 4 if margin is None else margin,
        "windows_total": stats.windows, "reader": type(reader).__name__,
        "wall_s": round(time.time() - t_start, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    })
    return out


def _describe(dst, colormap, class_names, confidence: bool) -> None:
    """Colour table, band descriptions and class names of the map being written."""
    if colormap and class_names:
        from shared.rasters import describe_class_band

        describe_class_band(dst, class_names, colormap, band=1, nodata=NODATA_OUT,
                            description="dune class (255 = nodata)")
    elif colormap:
        dst.write_colormap(1, colormap)
    dst.set_band_description(1, "dune class (255 = nodata)")
    if confidence:
        dst.set_band_description(2, "confidence: blended max probability x 100")


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
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="64-band embedding GeoTIFF(s): several scenes (or --scheduler) map "
                        "each into --out as a folder")
    hidden_alias(p, "--input_tif", "--input-tif", dest="input_tif")
    p.add_argument("--out", dest="output_tif", metavar="OUT_TIF",
                   help="classification GeoTIFF to write (required); a folder of "
                        "<scene>_dunes.tif with several inputs or --scheduler")
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
    p.add_argument("--blend", choices=BLENDS, default=DEFAULT_BLEND,
                   help="weight of overlapping windows (shared.engine); default cosine, the "
                        "mapper's own rule: 0 in a margin of overlap/4 at inner window sides, "
                        "then a cosine ramp")
    add_progress_argument(p)
    from shared.cluster import add_scheduler_argument

    add_scheduler_argument(p)
    return finish_parser(p)


def load_mapper(weights: str, text_embed_path: str | None, device: str, precision: str,
                threads: int) -> dict:
    """The model of a worker process (built once per worker by :mod:`shared.cluster`; for one
    scene in-process the same call): torch threads, device, text embeddings, autocast."""
    import torch

    from dune_vlm.checkpoint import load_model_for_inference
    from shared.torch_runtime import pick_device, precision_for

    torch.set_num_threads(max(1, int(threads)))
    dev = pick_device(device)
    model, text, _ = load_model_for_inference(weights, text_embed_path, dev)
    return {"model": model, "text": text, "device": dev,
            "autocast": precision_for(precision, dev).autocast}


def map_scene(loaded: dict, input_tif, output_tif, progress: bool = False, **kw) -> dict:
    """One scene mapped with a loaded model (:func:`load_mapper`): :func:`predict_raster`
    with the class colours and names."""
    from dune_vlm.utils.config import class_colors, class_names

    colors = {k: (*c, 255) for k, c in class_colors().items()}
    with loaded["autocast"]():
        return predict_raster(input_tif, output_tif, loaded["model"], loaded["text"],
                              device=loaded["device"], colormap=colors,
                              class_names=class_names(), progress=progress, **kw)


def map_task(loaded: dict, task, out: Path) -> dict:
    """One scene of the task list (worker side): ``<out>/<stem>_dunes.tif``."""
    return map_scene(loaded, task.path, out / f"{Path(task.path).stem}_dunes.tif",
                     **task.options)


def _main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    inputs = [*args.inputs, *([args.input_tif] if getattr(args, "input_tif", None) else [])]
    if not inputs:
        p.error("INPUT is required")
    for dest, flag in (("output_tif", "--out"), ("weights", "--model")):
        if getattr(args, dest, None) is None:
            p.error(f"{flag} is required")
    from shared.runs import check_not_inputs, check_output_dir

    many = len(inputs) > 1 or args.scheduler is not None
    check_not_inputs([args.output_tif], [*inputs, args.weights, args.text_embed_path])
    check_output_dir(Path(args.output_tif) if many else Path(args.output_tif).parent)
    stride = args.stride if args.stride is not None else args.tile_size - args.overlap
    kw = dict(tile_size=args.tile_size, stride=stride, batch_size=args.batch_size,
              confidence=args.confidence, input_scale=args.input_scale, nodata=args.nodata,
              blend=args.blend, max_rows_mb=args.max_rows_mb)
    load_args = (str(Path(args.weights).resolve()), args.text_embed_path and
                 str(Path(args.text_embed_path).resolve()), args.device, args.precision,
                 args.threads)
    from shared.cli import progress_enabled

    show = progress_enabled(args.no_progress)
    if many:
        return _map_many(inputs, Path(args.output_tif), load_args, kw, args.scheduler, show)
    stats = map_scene(load_mapper(*load_args), inputs[0], args.output_tif, progress=show, **kw)
    print(f"wrote {stats['output']}: {stats['width']}x{stats['height']}, "
          f"{stats['windows_predicted']} windows predicted "
          f"({stats['windows_skipped_nodata']} all-nodata skipped, {stats['reader']}), "
          f"{stats['wall_s']} s, "
          f"peak RSS {stats['peak_rss_mb']} MB")
    return 0


def _map_many(inputs: list[str], out: Path, load_args: tuple, kw: dict,
              scheduler: str | None, progress: bool) -> int:
    """Several scenes (or ``--scheduler``): one task per scene of :mod:`shared.cluster`, each
    mapped whole by the streaming engine into ``<out>/<stem>_dunes.tif``."""
    from shared.cluster import (
        Job,
        SceneTask,
        file_signature,
        report_failures,
        run_scenes,
        user_error_types,
    )

    tasks = [SceneTask(Path(p).name, str(p), kw) for p in inputs]
    job = Job(work=map_task, out=str(out), load=load_mapper, load_args=load_args,
              signature=f"dune_vlm {file_signature(load_args[0])} {load_args[1]} "
                        f"{sorted(kw.items())}",
              user_errors=user_error_types())
    summary = run_scenes(job, tasks, scheduler, threads=load_args[-1],
                         resource=None if scheduler else load_mapper(*load_args),
                         progress=progress, desc="map")
    report_failures(summary)  # one line each; every scene failed: the error, exit 2
    print(f"{summary.line()}; maps in {out}")
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
