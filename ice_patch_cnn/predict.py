"""Chunk probabilities for every chunk of every image (batched, streaming, resumable, sharded).

Inputs are HiRISE products (anything ``chunk.py`` reads: they are chunked on the fly, nothing is
written per chunk) or folders written by ``chunk.py`` (``<folder>/<image>/chunks.csv`` and its
PNGs). For each image ``<out>/chunks/<image>.csv`` lists every kept chunk with its position and
``p`` = P(small ice patch); ``<out>/chunks/<image>.json`` holds the image's chunking counts, and
``<out>/top/`` the ``--keep-top`` most likely chunks of each image as PNGs (for the survey's
contact sheet). One image is one task of :mod:`shared.cluster`: ``--scheduler local:N`` or an
address runs the images on a Dask cluster (the model loaded once per worker), absent in this
process; either way an image is marked done (``<out>/done/<image>.json``) after its files are
written, a re-run skips the done images, a bad image is recorded in ``<out>/scenes.json`` and
the others go on. ``--shard i/N`` (0 <= i < N) keeps only the images whose name hashes (CRC32)
to ``i`` modulo ``N`` (a share of the same task list: disjoint, covering all images,
independent of order and machine). Then run ``survey.py`` on ``<out>`` for the image-level
decisions.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from shared.errors import UserError

CHUNK_FIELDS = ["image", "source", "grid_row", "grid_col", "y", "x", "size", "footprint", "p"]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N (:func:`shared.cluster.parse_share`)."""
    from shared.cluster import parse_share

    return parse_share(text)


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    """Whether image ``name`` belongs to ``shard`` (:func:`shared.cluster.in_share`)."""
    from shared.cluster import in_share

    return in_share(name, shard)


def _chunk_folder_items(folder: Path) -> Iterator[tuple[dict, np.ndarray]]:
    from shared.images import read_image

    with open(folder / "chunks.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            pixels = read_image(folder.parent / row["file"], mode="L")
            yield row, pixels


def list_inputs(inputs: Sequence[str | Path]) -> list[tuple[str, Path, str]]:
    """(image name, path, kind) with kind "raster" or "chunks" (a chunk.py image folder)."""
    from ice_patch_cnn.chunk import find_images, image_name

    items: list[tuple[str, Path, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and (p / "chunks.csv").is_file():
            items.append((p.name, p, "chunks"))
        elif p.is_dir() and any((q / "chunks.csv").is_file() for q in p.iterdir() if q.is_dir()):
            items += [(q.name, q, "chunks") for q in sorted(p.iterdir())
                      if q.is_dir() and (q / "chunks.csv").is_file()]
        else:
            items += [(image_name(q), q, "raster") for q in find_images([p])]
    return items


class Predictor:
    """Batched forward passes of a loaded classifier."""

    def __init__(self, model, batch_size: int = 25):
        self.model = model
        self.batch_size = int(batch_size)
        shape = model.input_shape
        self.size = int(shape[1]) if shape[1] is not None else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        return np.asarray(self.model.predict_on_batch(x), dtype=np.float64).reshape(-1)


def predict_image(name: str, path: Path, kind: str, predictor: Predictor, spec, out: Path,
                  keep_top: int = 4) -> dict:
    """Probabilities for one image; writes its CSV (last, the resume marker), JSON, top PNGs."""
    from ice_patch_cnn.chunk import ImageStats, _png_bytes, iter_chunks
    from shared.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

    stats = ImageStats(name, str(path))
    rows: list[dict] = []
    top: list[tuple[float, int, np.ndarray, str]] = []
    buf_px: list[np.ndarray] = []
    buf_meta: list[dict] = []

    def flush():
        if not buf_px:
            return
        probs = predictor(np.stack(buf_px))
        for meta, pix, p in zip(buf_meta, buf_px, probs):
            meta["p"] = round(float(p), 6)
            rows.append(meta)
            item = (float(p), len(rows), pix, f"{name}_r{meta['grid_row']}_c{meta['grid_col']}")
            if len(top) < keep_top:
                heapq.heappush(top, item)
            elif keep_top and item[0] > top[0][0]:
                heapq.heapreplace(top, item)
        buf_px.clear()
        buf_meta.clear()

    if kind == "chunks":
        meta = path / "image.json"
        if meta.is_file():
            saved = json.loads(meta.read_text(encoding="utf-8"))
            stats.crs, stats.transform = saved.get("crs"), saved.get("transform")
        source = _chunk_folder_items(path)
        for row, pixels in source:
            if predictor.size and pixels.shape != (predictor.size, predictor.size):
                raise UserError(f"{row['file']}: chunk is {pixels.shape[1]}x{pixels.shape[0]},"
                                f" the model expects {predictor.size}x{predictor.size}")
            stats.chunks_total += 1
            stats.chunks_kept += 1
            buf_px.append(pixels)
            buf_meta.append({k: row.get(k, "") for k in CHUNK_FIELDS[:-1]} | {"image": name})
            if len(buf_px) >= predictor.batch_size:
                flush()
    else:
        for chunk in iter_chunks(path, spec, stats):
            if chunk.pixels is None:
                continue
            buf_px.append(chunk.pixels)
            buf_meta.append({"image": name, "source": str(path), "grid_row": chunk.grid_row,
                             "grid_col": chunk.grid_col, "y": chunk.y, "x": chunk.x,
                             "size": chunk.size, "footprint": chunk.footprint_wkt})
            if len(buf_px) >= predictor.batch_size:
                flush()
    flush()
    for _p, _, pix, cname in top:
        atomic_write_bytes(out / "top" / f"{cname}.png", _png_bytes(pix))
    info = {k: v for k, v in asdict(stats).items() if k != "files"}
    info["top"] = [f"{c}.png" for _, _, _, c in sorted(top, reverse=True)]
    atomic_write_json(out / "chunks" / f"{name}.json", info)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CHUNK_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "chunks" / f"{name}.csv", text.getvalue())
    return info


def load_predictor(model_path: str, batch_size: int, threads: int = 2,
                   precision: str = "auto") -> Predictor:
    """The model of a worker process (built once per worker by :mod:`shared.cluster`):
    TensorFlow quiet, its threads and precision set as the CLI sets them in-process."""
    from ice_patch_cnn.model import load_model, set_threads
    from shared.keras_models import model_in_precision
    from shared.runs import quiet_tensorflow

    quiet_tensorflow()
    set_threads(threads)
    return Predictor(model_in_precision(load_model(model_path), precision), batch_size)


def predict_scene(predictor: Predictor, task, out: Path) -> dict:
    """One image of the task list (worker side): :func:`predict_image`."""
    o = task.options
    return predict_image(task.name, Path(task.path), o["kind"], predictor, o["spec"], out,
                         o["keep_top"])


def scene_tasks(inputs: Sequence[str | Path], spec, keep_top: int = 4,
                shard: tuple[int, int] | None = None) -> list:
    """One :class:`shared.cluster.SceneTask` per input image (of the shard)."""
    from shared.cluster import SceneTask

    return [SceneTask(name, str(path), {"kind": kind, "spec": spec, "keep_top": keep_top})
            for name, path, kind in list_inputs(inputs) if in_shard(name, shard)]


def scene_job(out: str | Path, model_path: str | Path | None, batch_size: int,
              threads: int = 2, precision: str = "fp32", model_name: str | None = None):
    """The :class:`shared.cluster.Job` of a prediction run (``model_path`` None: in-process
    only, with the model object given to :func:`run_predict`)."""
    from shared.cluster import Job, file_signature, user_error_types

    path = str(Path(model_path).resolve()) if model_path is not None else None
    return Job(work=predict_scene, out=str(out), load=load_predictor if path else None,
               load_args=(path, int(batch_size), int(threads), precision),
               signature=f"ice_patch_cnn model {file_signature(path) if path else model_name}",
               user_errors=user_error_types())


def run_predict(model, inputs: Sequence[str | Path], out: str | Path, spec=None,
                batch_size: int = 25, shard: tuple[int, int] | None = None,
                keep_top: int = 4, progress: bool = True, scheduler: str | None = None,
                model_path: str | Path | None = None, threads: int = 2,
                precision: str = "fp32") -> dict:
    """Predict every input image of the shard that is not done yet, in this process (with
    ``model``) or on the Dask cluster ``scheduler`` (each worker loads ``model_path``);
    returns counts."""
    from ice_patch_cnn.chunk import ChunkSpec
    from shared.cluster import report_failures, run_scenes

    out = Path(out)
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    predictor = Predictor(model, batch_size)
    if spec is None:
        spec = ChunkSpec(size=predictor.size or 1024)
    elif predictor.size and spec.size != predictor.size:
        raise UserError(f"chunk size {spec.size} does not match the model's input "
                        f"{predictor.size} px")
    tasks = scene_tasks(inputs, spec, keep_top, shard)
    if scheduler is not None and model_path is None:
        raise ValueError("a cluster run needs model_path (the workers load the model)")
    job = scene_job(out, model_path, batch_size, threads, precision, model.name)
    summary = run_scenes(job, tasks, scheduler, threads=threads, resource=predictor,
                         progress=progress, desc="predict")
    report_failures(summary, raise_if_all=False)  # the CLI says when every input failed
    return {"images_in_shard": len(tasks), "predicted": len(summary.done),
            "skipped_done": len(summary.skipped),
            "failed": [{"file": f["path"], "error": f["error"]} for f in summary.failed]}


def main(argv: Sequence[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import add_precision_argument, add_progress_argument, finish_parser
    from shared.runs import positive_int

    parser = argparse.ArgumentParser(
        prog="ice-predict",
        description="Chunk probabilities P(small ice patch) for HiRISE images (chunked on the "
                    "fly) or chunk.py output folders; writes <out>/chunks/<image>.csv. "
                    "Resumable; --scheduler runs the images on a Dask cluster; --shard i/N "
                    "keeps a share of them.")
    parser.add_argument("inputs", nargs="+", help="image files, folders of images, or chunk.py "
                        "output folders")
    parser.add_argument("--model", required=True, type=Path, metavar="PATH",
                        help="trained weights: a .keras model (required)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (required)")
    parser.add_argument("--config", default="paper",
                        help="profile for the chunking settings (paper, quick or YAML path)")
    parser.add_argument("--batch-size", type=positive_int, help="chunks per forward pass")
    parser.add_argument("--shard", help="i/N: process only shard i of N (0 <= i < N)")
    from shared.cluster import add_scheduler_argument

    add_scheduler_argument(parser)
    parser.add_argument("--despeckle", action=argparse.BooleanOptionalAction, default=None,
                        help="remove isolated saturated pixels (default: the profile's)")
    parser.add_argument("--keep-top", type=int, default=4,
                        help="most likely chunks of each image kept as PNG (default 4)")
    parser.add_argument("--threads", type=positive_int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--device", default="auto", help="auto, cpu or gpu; a device that is "
                        "not there is an error")
    add_precision_argument(parser)
    add_progress_argument(parser, aliases=("--quiet",))
    args = finish_parser(parser).parse_args(argv)
    from shared.cli import check_keras_device

    check_keras_device(args.device)

    from ice_patch_cnn.chunk import ChunkSpec
    from ice_patch_cnn.config import ConfigError, load_config

    try:
        shard = parse_shard(args.shard) if args.shard else None
        cfg = load_config(args.config)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    if not args.model.is_file():
        parser.error(f"{args.model}: model file not found")
    from shared.runs import quiet_tensorflow

    quiet_tensorflow()
    from shared.cli import progress_enabled
    from shared.keras_models import model_in_precision, resolve_keras_precision

    precision = resolve_keras_precision(args.precision, "--precision")
    from ice_patch_cnn.model import load_model, set_threads
    from shared.runs import check_not_inputs, check_output_dir

    check_output_dir(args.out)
    check_not_inputs([args.out], [args.model, *args.inputs])
    set_threads(args.threads)
    model = model_in_precision(load_model(args.model), precision)  # saved in either precision
    size = int(model.input_shape[1])
    spec = ChunkSpec.from_config(cfg, size=size, despeckle=args.despeckle)
    batch = args.batch_size or int(cfg.get("predict", {}).get("batch_size", 25))
    result = run_predict(model, args.inputs, args.out, spec, batch, shard, args.keep_top,
                         progress=progress_enabled(args.no_progress), scheduler=args.scheduler,
                         model_path=args.model, threads=args.threads, precision=precision)
    print(f"{result['predicted']} image(s) predicted, {result['skipped_done']} already done, "
          f"{len(result['failed'])} failed (shard {args.shard or 'all'}); results in "
          f"{args.out / 'chunks'}")
    if result["failed"] and not (result["predicted"] or result["skipped_done"]):
        raise UserError(f"every input was skipped ({len(result['failed'])} failed); first: "
                        f"{result['failed'][0]['error']}")
    if not result["images_in_shard"]:
        raise UserError(f"no image found in {', '.join(map(str, args.inputs))}"
                        + (f" for shard {args.shard}" if args.shard else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
