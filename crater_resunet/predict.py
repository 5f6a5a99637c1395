"""Predict crater masks and boxes with a trained model; score them when labels exist.

    python -m crater_resunet.predict --model runs/crater_resunet/quick/best.keras \
        --out runs/crater_resunet/predict  datasets/crater_resunet/pycda/valid_strip/images

For every image (any size; a small one is resized to the model input as in the paper, a large
one is cut into overlapping tiles at its own resolution and the probabilities are averaged)
it writes ``masks/<stem>_prob.png`` and ``masks/<stem>_mask.png`` (the cleaned crater mask),
craters from :func:`crater_resunet.craters.extract_craters` (smoothing and closing before the
threshold, one crater per blob, equivalent-circle diameter, crater NMS; ``--scales`` adds an
image pyramid) as YOLO detections ``labels/<stem>.txt`` (``class xc yc w h confidence``; the
box is the crater circle's bounding square, confidence = mean probability inside the blob),
one row per crater in ``craters.csv`` (centre, diameter, confidence, peak, scale, nodata),
the paper's figure ``figures/<stem>.png`` (image, ground truth when labelled, predicted mask,
image with boxes) and ``figures/<stem>_overlay.png`` (predicted and true circles at native
resolution). When a YOLO label file is found (``--labels`` folder, else a
``labels/`` folder beside ``images/``) it also reports pixel scores and crater-level
precision, recall and F1 by IoU matching of boxes (``metrics.json``).

This module is the command line and the loop over inputs only: each input goes to
:func:`predict_scene`, which sends a plain image to :mod:`crater_resunet.image_predict` and a
raster to :mod:`crater_resunet.raster_predict` (both tile through ``shared.engine``); the
catalogue is written by :mod:`crater_resunet.craters`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crater_resunet.data import IMAGE_EXTS
from shared.errors import UserError


# ------------------------------------------------------------------------------ the run
def is_raster(path: Path) -> bool:
    """Georeferenced/any-bit-depth rasters go through ``raster_predict`` (shared.rasters)."""
    from shared.rasters import RASTER_SUFFIXES  # rasterio: not imported for --help

    return path.suffix.lower() in RASTER_SUFFIXES


def collect_images(inputs: list[Path]) -> list[Path]:
    from shared.rasters import RASTER_SUFFIXES

    exts = IMAGE_EXTS + RASTER_SUFFIXES
    out = []
    for p in inputs:
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in exts
                           and q.suffix.lower() != ".lbl")
            if not found:
                raise UserError(f"{p}: no images ({', '.join(exts)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such image or folder")
    return out


def run_prediction(model, images: list[Path], out: Path, *, labels_dir: Path | None = None,
                   threshold: float = 0.5, mode: str = "auto", overlap: int | None = None,
                   iou_threshold: float = 0.5, min_area: float = 0.0, mask_shape: str = "box",
                   channel_order: str = "bgr", figures: bool | int = True,
                   batch_size: int = 8, scale: float | None = None,
                   target_resolution: float | None = None,
                   train_resolution: float | None = None, scales=None, sigma: float = 1.0,
                   closing: int = 1, drop_nodata: bool = False,
                   progress: bool = True, scheduler: str | None = None,
                   model_path: Path | None = None, precision: str = "auto") -> dict:
    """Predict every image, write the outputs, return the metrics (when labels exist).

    Plain images (PNG/JPEG/BMP) as in the paper; rasters (GeoTIFF, JP2, ...; any bit depth)
    streamed through :mod:`crater_resunet.raster_predict` into GeoTIFFs and the catalogue
    (``craters.csv``; ``craters.gpkg`` for georeferenced ones).

    ``scales``: None (one scale, as before), ``"auto"`` (the image pyramid 1, 1/2, ... down to
    one model tile, :func:`crater_resunet.pyramid.auto_scales`), or a list such as
    ``[1, 0.5, 0.25]`` (relative to the raster's ``scale``); the scales are merged by the
    crater NMS. ``sigma`` / ``closing``: smoothing and closing before the threshold
    (:func:`crater_resunet.craters.extract_craters`); ``drop_nodata`` drops craters whose rim
    reaches nodata instead of flagging them (``nodata`` column).

    Each image is one task of :mod:`shared.cluster`: here with ``model``, or on the Dask
    cluster ``scheduler`` (each worker loads ``model_path`` once, in ``precision``). A done
    image (``<out>/done/``) is skipped on a re-run; a bad one is recorded and the rest go on.
    The catalogue, GeoPackage and metrics are merged from the done images' records, the same
    after either run. ``figures``: figures for every image (True), the first N inputs, or
    none."""
    import json

    from crater_resunet.pyramid import parse_scales
    from shared.atomic import atomic_write_json
    from shared.cluster import (
        Job,
        SceneTask,
        file_signature,
        local_threads,
        report_failures,
        run_scenes,
        user_error_types,
    )

    out = Path(out)
    opts = dict(threshold=threshold, mode=mode, overlap=overlap, iou_threshold=iou_threshold,
                min_area=min_area, mask_shape=mask_shape, channel_order=channel_order,
                batch_size=batch_size, scales=parse_scales(scales), sigma=sigma,
                closing=closing, scale=scale, target_resolution=target_resolution,
                train_resolution=train_resolution, drop_nodata=drop_nodata)
    if scheduler is not None and model_path is None:
        raise ValueError("a cluster run needs model_path (the workers load the model)")
    labels = str(labels_dir) if labels_dir is not None else None
    tasks = [SceneTask(path.name, str(path),
                       {"opts": {**opts, "progress": progress and scheduler is None},
                        "labels": labels,
                        "figure": bool(figures) and (figures is True or i < int(figures))})
             for i, path in enumerate(images)]
    path = str(Path(model_path).resolve()) if model_path is not None else None
    threads = local_threads(scheduler)
    job = Job(work=predict_task, out=str(out), load=load_predictor if path else None,
              load_args=(path, precision, threads),
              signature=f"crater_resunet {file_signature(path) if path else 'in memory'}"
                        f" {json.dumps(opts, sort_keys=True, default=str)} labels={labels}",
              user_errors=user_error_types())
    # a model object (library calls: reproduce, lunar) has no file to name: redo every image
    summary = run_scenes(job, tasks, scheduler, threads=threads or 1, resource=model,
                         progress=progress and len(images) >= 3, desc="predict",
                         resume=path is not None)
    report_failures(summary)  # one line each; every input failed: the error, exit 2
    result = {"images": len(images), "threshold": threshold, "iou_threshold": iou_threshold,
              "mode": mode, "scales": opts["scales"], "scenes": summary.as_dict()["counts"]}
    result.update(merge_catalogue(out, tasks))
    atomic_write_json(out / "metrics.json", result)
    return result


def merge_catalogue(out: Path, tasks: list) -> dict:
    """``craters.csv`` and ``craters.gpkg`` of every done image of ``tasks`` (in task order,
    from their done markers); returns the crater count, the per-image records and, when
    labelled images are among them, the summed scores."""
    from crater_resunet.craters import write_catalogue_csv, write_catalogue_gpkg
    from crater_resunet.image_predict import Totals
    from shared.cluster import done_records

    totals, rows, per_image, layers = Totals(), [], [], []
    for _task, rec in done_records(out, tasks):
        rows += rec["rows"]
        per_image.append(rec["info"])
        if rec["layer"]:
            layers.append((rec["layer"]["name"], rec["rows"], rec["layer"]))
        if rec["totals"] is not None:
            one = Totals()
            for part in ("conf", "crater", "soft"):
                getattr(one, part).update(rec["totals"][part])
            totals.merge(one)
    write_catalogue_csv(out / "craters.csv", rows)
    if layers:
        write_catalogue_gpkg(out / "craters.gpkg", layers)
    result = {"craters_predicted": len(rows), "per_image": per_image}
    if any("tp" in r for r in per_image):
        result["pixel"], result["crater"] = totals.scores()
        result["labelled_images"] = sum("tp" in r for r in per_image)
    return result


def load_predictor(model_path: str, precision: str = "auto", threads: int | None = None):
    """The model of a worker process (built once per worker by :mod:`shared.cluster`), as
    the CLI loads it: TensorFlow quiet, its threads, the precision resolved there."""
    from crater_resunet.model import load_model, with_precision
    from shared.runs import quiet_tensorflow

    quiet_tensorflow()
    if threads:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
        except RuntimeError:  # TensorFlow already initialised: keep its threads
            pass
    return with_precision(load_model(model_path, compile=False), precision)


def predict_task(model, task, out: Path) -> dict:
    """One image of the task list (worker side): :func:`predict_scene`, its record made
    JSON (the totals as dicts, the GeoPackage layer with its points computed)."""
    from crater_resunet.craters import portable_layer

    o = task.options
    res = predict_scene(model, Path(task.path), out, o["opts"],
                        labels_dir=Path(o["labels"]) if o["labels"] else None,
                        figure=o["figure"])
    return {"rows": res["rows"], "info": res["info"], "figure": bool(res["figure"]),
            "totals": vars(res["totals"]) if res["totals"] is not None else None,
            "layer": portable_layer(res["layer"]) if res["layer"] else None}


def predict_scene(model, path: Path, out: Path, opts: dict, *, labels_dir: Path | None = None,
                  figure: bool = False) -> dict:
    """One input, whatever its kind: a raster through :mod:`crater_resunet.raster_predict`,
    a plain image through :mod:`crater_resunet.image_predict`. Returns ``rows`` (catalogue),
    ``info`` (the per-image record), ``layer`` (for the GeoPackage, or None), ``totals``
    (a labelled image's scores to sum, or None) and ``figure`` (whether one was written);
    ``opts`` as :func:`run_prediction` builds them."""
    if is_raster(path):
        from crater_resunet import raster_predict as rp

        s = rp.resolve_scale(path, opts["scale"], opts["target_resolution"],
                             opts["train_resolution"])
        res = rp.predict_raster(model, path, out, scale=s, threshold=opts["threshold"],
                                overlap=opts["overlap"], min_area=opts["min_area"],
                                batch_size=opts["batch_size"],
                                channel_order=opts["channel_order"], scales=opts["scales"],
                                sigma=opts["sigma"], closing=opts["closing"],
                                drop_nodata=opts["drop_nodata"], figure=figure,
                                progress=None if opts.get("progress") else False)
        return {**res, "totals": None, "figure": bool(res["info"].get("overlay"))}
    from crater_resunet.image_predict import Totals, predict_image

    totals = Totals()
    rows, record = predict_image(model, path, out, totals, opts, labels_dir, figure)
    return {"rows": rows, "info": record, "layer": None,
            "totals": totals if "tp" in record else None, "figure": figure}


def model_run_config(model_path: Path) -> dict:
    """The run config saved beside a model (``config.yaml``, or ``config.yml`` of older runs),
    laid over the paper profile; the paper profile alone for a model without one (e.g. a
    notebook-trained file)."""
    from crater_resunet.config import load_config
    from shared.configs import deep_merge, read_yaml_mapping

    cfg = load_config("paper")
    for name in ("config.yaml", "config.yml"):
        path = Path(model_path).parent / name
        if path.is_file():
            return deep_merge(cfg, read_yaml_mapping(path, UserError))
    return cfg


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import add_progress_argument, finish_parser
    from shared.runs import (
        nonnegative_float,
        nonnegative_int,
        positive_float,
        positive_int,
    )

    parser = argparse.ArgumentParser(
        prog="craters-predict",
        description="Crater masks, boxes (YOLO detections with confidence), a crater catalogue "
                    "(craters.csv; craters.gpkg for georeferenced rasters) and figures from a "
                    "trained .keras model; metrics when labels are found. Rasters (GeoTIFF, "
                    "JP2, PDS .IMG, ISIS .cub; any bit depth) are streamed in windows and give "
                    "probability and mask GeoTIFFs with the input's CRS.")
    parser.add_argument("inputs", nargs="+", type=Path, help="image/raster files or folders")
    parser.add_argument("--model", type=Path, required=True, help="trained .keras model")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--labels", type=Path, help="folder of YOLO ground-truth labels "
                        "(default: labels/ beside an images/ folder, if present)")
    parser.add_argument("--threshold", type=positive_float, default=0.5, help="mask threshold")
    parser.add_argument("--mode", choices=["auto", "resize", "tile"], default="auto",
                        help="plain images: resize to the model input (paper), overlapping "
                             "tiles, or auto: tile images larger than twice the input (default)")
    parser.add_argument("--overlap", type=nonnegative_int,
                        help="tile overlap in pixels (default: a quarter of the model input "
                             "for images, 64 for rasters)")
    parser.add_argument("--scale", type=positive_float,
                        help="rasters: model pixels per input pixel (e.g. 0.5 halves the "
                             "raster before prediction)")
    parser.add_argument("--target-resolution", type=positive_float, metavar="M_PER_PX",
                        help="rasters: resample to this many metres per pixel (default: the "
                             "run config's data.resolution_m, when known)")
    parser.add_argument("--scales", default=None, metavar="auto|S1,S2,...",
                        help="image pyramid: 'auto' (1, 1/2, 1/4, ... down to the scale at "
                             "which the whole image fits one model tile) or a "
                             "list like 1,0.5,0.25 (relative to --scale for rasters); the "
                             "scales are merged by a crater NMS (DeepMoon criteria) into one "
                             "catalogue with a 'scale' column (default: one scale)")
    parser.add_argument("--smooth", type=nonnegative_float, default=1.0, metavar="SIGMA",
                        help="Gaussian smoothing (px) of the probability before the threshold "
                             "(0 = none)")
    parser.add_argument("--closing", type=nonnegative_int, default=1, metavar="PX",
                        help="radius of the binary closing after the threshold (0 = none)")
    parser.add_argument("--drop-nodata", action="store_true",
                        help="drop craters whose rim reaches nodata (default: keep them with "
                             "nodata=1 in the catalogue)")
    parser.add_argument("--iou", type=positive_float, default=0.5,
                        help="IoU to match a predicted box to a true crater")
    parser.add_argument("--min-area", type=nonnegative_float, default=None,
                        help="drop predicted blobs smaller than this many (input) pixels "
                             "(default: predict.min_area of the model's run config, else the "
                             "paper profile's)")
    parser.add_argument("--mask-shape", choices=["box", "ellipse"],
                        help="ground-truth mask shape (default: the model's run config, else box)")
    parser.add_argument("--channel-order", choices=["bgr", "rgb"],
                        help="channel order the model was trained with (default: its run "
                             "config, else bgr)")
    parser.add_argument("--max-figures", type=nonnegative_int, default=20,
                        help="write at most this many figures (0 = none)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="tiles per forward pass")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="arithmetic: auto = bf16 (mixed_bfloat16) on a CPU with native "
                             "bf16 (avx512_bf16/amx_bf16), else fp32; the model is rebuilt "
                             "in that precision with its own weights")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu or gpu; a device this machine lacks is an error")
    add_progress_argument(parser, aliases=())
    from shared.cluster import add_scheduler_argument

    add_scheduler_argument(parser)
    return finish_parser(parser)


def main(argv=None) -> int:
    from shared.errors import UserError
    from shared.runs import check_not_inputs, check_output_dir

    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold < 1.0 or not 0.0 < args.iou <= 1.0:
        parser.error("--threshold must be in (0, 1) and --iou in (0, 1]")
    if not args.smooth >= 0 or args.closing < 0:
        parser.error("--smooth and --closing must be >= 0")
    from crater_resunet.pyramid import parse_scales

    try:
        parse_scales(args.scales)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.model.is_file():
        raise UserError(f"{args.model}: model file not found")
    if args.labels is not None and not args.labels.is_dir():
        raise UserError(f"{args.labels}: labels folder not found")
    images = collect_images(args.inputs)
    check_output_dir(args.out)
    check_not_inputs([args.out], [*images, args.model])
    from crater_resunet.image_predict import find_label

    out_labels = (args.out / "labels").resolve()
    for image in images:
        truth = find_label(image, args.labels)
        if truth is not None and truth.resolve().parent == out_labels:
            raise UserError(f"{args.out}: predictions would overwrite the ground-truth labels "
                            f"in {truth.parent} (e.g. {truth.name}); choose another --out")
    cfg = model_run_config(args.model)
    min_area = args.min_area if args.min_area is not None else float(cfg["predict"]["min_area"])
    from shared.cli import check_keras_device, progress_enabled
    from shared.runs import quiet_tensorflow

    check_keras_device(args.device)
    quiet_tensorflow()
    from crater_resunet.model import load_model, with_precision

    model = with_precision(load_model(args.model, compile=False), args.precision)
    res = run_prediction(model, images, args.out, labels_dir=args.labels,
                         threshold=args.threshold, mode=args.mode, overlap=args.overlap,
                         iou_threshold=args.iou, min_area=min_area,
                         mask_shape=args.mask_shape or cfg["data"]["mask_shape"],
                         channel_order=args.channel_order or cfg["data"]["channel_order"],
                         figures=args.max_figures if args.max_figures > 0 else False,
                         batch_size=args.batch_size, scale=args.scale,
                         target_resolution=args.target_resolution,
                         train_resolution=cfg["data"].get("resolution_m"),
                         scales=args.scales, sigma=args.smooth, closing=args.closing,
                         drop_nodata=args.drop_nodata,
                         progress=progress_enabled(args.no_progress),
                         scheduler=args.scheduler, model_path=args.model,
                         precision=args.precision)
    print(f"{res['images']} image(s), {res['craters_predicted']} crater(s) -> {args.out}")
    if "pixel" in res:
        p, c = res["pixel"], res["crater"]
        print(f"pixel: dice {p['dice']:.4f} precision {p['precision']:.4f} recall "
              f"{p['recall']:.4f} accuracy {p['accuracy']:.4f}; craters (IoU >= {args.iou}): "
              f"P {c['crater_precision']:.4f} R {c['crater_recall']:.4f} F1 {c['crater_f1']:.4f}")
    return 0


def cli(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
