"""Predict crack masks with a trained Mars-CrackNet (or UNet) checkpoint.

Input: one image or a folder (PNG, JPG, TIFF/GeoTIFF, JP2, anything rasterio opens). Output
per image in ``--out``: ``<stem>_mask.png`` (crack = 255), or ``<stem>_mask.tif`` with the
input's CRS and transform when the input is a georeferenced raster; with ``--prob`` the crack
probability (``_prob``, uint8 = round(255 p)); with ``--overlay`` a PNG of the cracks in red
over the image (downsampled to at most ``--overlay-max`` pixels a side).

Images larger than ``--tile`` are predicted in overlapping tiles blended with a smooth window;
rasters are read window by window and the outputs written strip by strip, so a HiRISE-size
image (20,000 x 20,000 pixels) runs in bounded memory. Any size works (the network input is
padded to a multiple of 32 and cropped back).

With ``--masks DIR`` (ground-truth masks with the same stems) it also writes per-image and mean
precision, recall, Dice and Jaccard (``metrics.csv``, ``metrics.json``).

Examples::

    python -m mars_cracknet.predict test/imgs --model runs/mars_cracknet/resunet_semi --out pred/
    python -m mars_cracknet.predict ESP_012345_1234_RED.JP2 --model best.safetensors \\
        --out pred/ --tile 1024 --overlay
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from shared.errors import UserError
from shared.rasters import RASTER_SUFFIXES as _RASTER_SUFFIXES

# the shared raster list (ISIS .cub, PDS .LBL, VRT too: issue 27)
RASTER_SUFFIXES = _RASTER_SUFFIXES
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", *RASTER_SUFFIXES)


class PredictError(UserError):
    """A user input problem; the message names the file."""


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import add_precision_argument, add_progress_argument, finish_parser
    from shared.runs import positive_int

    p = argparse.ArgumentParser(
        prog="cracknet-predict",
        description="Predict crack masks with a Mars-CrackNet / UNet checkpoint (tiled, any "
                    "size; GeoTIFF in, GeoTIFF out).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::")[1] if "Examples::" in __doc__ else None)
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                   help="images or folders of images (the old form MODEL INPUT, with the "
                        "checkpoint first and no --model, still works)")
    p.add_argument("--model", type=Path, metavar="PATH",
                   help="trained weights: a run folder (its best.safetensors), our "
                        ".safetensors, or an original Mars-CrackNet torch.save(net.state_dict()) "
                        ".pth file (ResUNet or UNet)")
    p.add_argument("--out", type=Path, required=True, help="output folder (required)")
    p.add_argument("--arch", choices=["auto", "resunet", "unet"], default="auto",
                   help="network (default: auto, read from the checkpoint)")
    p.add_argument("--threshold", type=float, default=0.5, help="crack probability threshold")
    p.add_argument("--tile", type=int, default=512, help="tile side, a multiple of 32")
    p.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels")
    p.add_argument("--prob", action="store_true", help="also write the probability map")
    p.add_argument("--overlay", action="store_true", help="also write an overlay PNG")
    p.add_argument("--overlay-max", type=int, default=4096,
                   help="largest side of the overlay PNG in pixels")
    p.add_argument("--masks", type=Path, help="ground-truth masks: report P, R, Dice, Jaccard")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N; a device that "
                   "is not there is an error")
    add_precision_argument(p)
    add_progress_argument(p, aliases=())
    p.add_argument("--threads", type=positive_int, default=2,
                   help="torch CPU threads (per worker with --scheduler)")
    from shared.cluster import add_scheduler_argument

    add_scheduler_argument(p)
    return finish_parser(p)


def _resolve_model_args(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    """The vocabulary's ``--model PATH`` plus the old spellings: positional ``CHECKPOINT INPUT``
    and ``--model {auto,resunet,unet}`` for the architecture."""
    if args.model is not None and str(args.model) in ("auto", "resunet", "unet") \
            and not args.model.exists():
        args.arch, args.model = str(args.model), None
    if args.model is None:
        if len(args.inputs) < 2:
            p.error("--model PATH is required (the trained weights)")
        args.model = args.inputs.pop(0)
    args.checkpoint = args.model


# --------------------------------------------------------------------------- sources
# Rasters are read through shared.rasters.Scene with Mars-CrackNet's own stretch: the 0.5 and
# 99.5 percentiles of the valid pixels (the scene's default is 0.1/99.9, the ice chunker's);
# 8-bit rasters keep their values. Since issue 25 the Scene rules apply: valid pixels map to
# 1..255 (rounded; 0 marks invalid), the percentiles are those of the grey (luma) of an RGB
# raster, and a pixel is nodata when every band equals the nodata value (was: any band).
STRETCH_PERCENTILES = (0.5, 99.5)
# The blend of overlapping tiles: Mars-CrackNet's linear ramp from the tile sides (floor 0.05).
BLEND = "linear"


class ImageSource:
    """A plain image held in memory (PNG/JPG): every pixel valid, outputs as PNG."""

    tiff = False

    def __init__(self, path: Path):
        import numpy as np

        from mars_cracknet.data.mars import load_image
        from shared.engine import ArrayReader

        self.path = path
        self.image = load_image(path)
        self.height, self.width = self.image.shape[:2]
        self.reader = ArrayReader(np.moveaxis(self.image, -1, 0))

    def preview(self, step: int):
        return self.image[::step, ::step]

    def close(self) -> None:
        pass


class SceneSource:
    """A raster (GeoTIFF, HiRISE JP2, ...) read window by window through
    ``shared.rasters.open_scene`` (:data:`STRETCH_PERCENTILES`); nodata, NaN and alpha are
    invalid (the network sees 0 there, the outputs mark them). Georeferenced rasters and
    rasters with nodata give GeoTIFF outputs with the input's CRS and transform."""

    def __init__(self, path: Path):
        import numpy as np

        from shared.engine import SceneReader
        from shared.rasters import check_bands, open_scene

        self.path = path
        self.scene = open_scene(path, STRETCH_PERCENTILES)
        try:
            sc = self.scene
            check_bands(path, sc.count, model="Mars-CrackNet (an RGB or greyscale model)")
            if sc.all_invalid():
                raise PredictError(f"{path}: no valid pixels (every pixel is nodata or NaN); "
                                   "nothing to predict")
        except BaseException:
            self.scene.close()
            raise
        self.height, self.width = sc.height, sc.width
        self.crs, self.transform = sc.crs, sc.transform
        self.bands = [1, 2, 3] if sc.count >= 3 else [1]
        self.tiff = (sc.crs is not None or not sc.transform.is_identity
                     or sc.nodata is not None or np.dtype(sc.dtype).kind == "f")
        reader = SceneReader(sc, uint8=True, bands=self.bands)
        self.reader = reader if len(self.bands) == 3 else \
            (lambda win: _grey_as_rgb(*reader(win)))

    def preview(self, step: int):
        """(h / step, w / step, 3) uint8 of a decimated read (GDAL overviews when present)."""
        import numpy as np

        from shared.rasters import nodata_mask, to_uint8

        sc = self.scene
        raw = sc.dataset.read(self.bands, out_shape=(len(self.bands), -(-self.height // step),
                                                      -(-self.width // step)))
        invalid = nodata_mask(raw, sc.nodata)
        out = np.stack([to_uint8(b.astype(np.float32), invalid, sc.stretch) for b in raw], -1)
        return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out

    def close(self) -> None:
        self.scene.close()


def _grey_as_rgb(x, valid):
    import numpy as np

    return np.repeat(x, 3, axis=0), valid


def open_source(path: Path):
    if path.suffix.lower() in RASTER_SUFFIXES:
        return SceneSource(path)
    return ImageSource(path)


# --------------------------------------------------------------------------- prediction
def load_model(checkpoint: Path, model_name: str = "auto", device: str = "cpu"):
    """(model in eval mode, its name) from a run folder, our weights or an original file."""
    from mars_cracknet.checkpoint import load_model as _load

    return _load(checkpoint, None if model_name == "auto" else model_name, device)


def _tiff_writers(stack: contextlib.ExitStack, source, out_dir: Path, prob: bool,
                  threshold: float) -> dict:
    """Mask (and probability) GeoTIFF writers of ``shared.engine`` with the input's CRS and
    transform; nodata pixels hold 0 and are masked (GDAL per-dataset mask)."""
    import numpy as np

    from shared.engine import GeoTIFFWriter
    from shared.rasters import describe_class_band

    stem = source.path.stem
    kw = {"width": source.width, "height": source.height, "count": 1, "dtype": "uint8",
          "crs": source.crs, "transform": source.transform, "nodata": None,
          "dataset_mask": True}
    encode = {"mask": lambda p, v: ((np.where(v, p, 0) > threshold) * 255).astype(np.uint8),
              "prob": lambda p, v: np.round(np.where(v, p, 0) * 255).astype(np.uint8)}
    files = {k: stack.enter_context(GeoTIFFWriter(out_dir / f"{stem}_{k}.tif", encode=encode[k],
                                                  **kw))
             for k in (("mask", "prob") if prob else ("mask",))}
    describe_class_band(files["mask"].dataset, {0: "background", 255: "crack"},
                        {0: (0, 0, 0), 255: (230, 30, 30)},
                        description="crack mask (255 = crack, 0 = background)")
    if prob:
        files["prob"].dataset.set_band_description(1, "crack probability x 255")
    return files


class PngOutputs:
    """Mask (and probability) PNGs, assembled in memory (plain images)."""

    def __init__(self, source, out_dir: Path, prob: bool, threshold: float):
        from shared.engine import ArrayWriter

        self.stem, self.out_dir, self.prob, self.threshold = (source.path.stem, out_dir, prob,
                                                              threshold)
        self.array = ArrayWriter(source.height, source.width)

    def write(self, row0: int, prob, valid) -> None:
        self.array.write(row0, prob, valid)

    def close(self) -> dict[str, str]:
        import numpy as np
        from PIL import Image

        from shared.atomic import atomic_path

        p = self.array.prob[0]
        arrays = {"mask": ((p > self.threshold) * 255).astype(np.uint8)}
        if self.prob:
            arrays["prob"] = np.round(p * 255).astype(np.uint8)
        out = {}
        for name, arr in arrays.items():
            path = self.out_dir / f"{self.stem}_{name}.png"
            with atomic_path(path) as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
            out[name] = str(path)
        return out


class _Tally:
    """An engine writer that counts tp, fp, fn against the ground truth over the valid
    pixels and keeps a decimated mask for the overlay."""

    def __init__(self, threshold: float, gt, step: int | None):
        import numpy as np

        self.threshold, self.gt, self.step = threshold, gt, step
        self.counts = np.zeros(3, np.int64)
        self.small: list = []

    def write(self, row0: int, prob, valid) -> None:
        import numpy as np

        m = (np.where(valid, prob[0], 0) > self.threshold) & valid
        if self.gt is not None:
            g = self.gt[row0:row0 + m.shape[0]] & valid
            self.counts[:] += (np.count_nonzero(m & g), np.count_nonzero(m & ~g),
                               np.count_nonzero(~m & g))
        if self.step is not None:
            self.small.append(m[(-row0) % self.step::self.step, ::self.step])


def _write_overlay(source, small_mask: list, step: int, out_dir: Path) -> str:
    import numpy as np
    from PIL import Image

    from shared.atomic import atomic_path

    m = np.concatenate(small_mask, axis=0)
    base = source.preview(step)[:m.shape[0], :m.shape[1]].astype(np.float32)
    m = m[:base.shape[0], :base.shape[1]]
    base[m] = 0.45 * base[m] + 0.55 * np.array([255, 0, 0], np.float32)
    path = out_dir / f"{source.path.stem}_overlay.png"
    with atomic_path(path) as tmp:
        Image.fromarray(base.astype(np.uint8)).save(tmp, format="PNG")
    return str(path)


def torch_predict_fn(model, device: str = "cpu", amp: bool = False):
    """The engine's callback: (N, 3, h, w) float32 0..255 -> (N, h, w) crack probability."""
    import torch

    from mars_cracknet.inference import predict_tensor

    def fn(batch):
        x = torch.from_numpy(batch) / 255.0
        return predict_tensor(model, x.to(device), amp)[:, 0].cpu().numpy()

    return fn


def predict_image(model, source, out_dir: Path, *, threshold: float = 0.5, tile: int = 512,
                  overlap: int = 64, prob: bool = False, overlay: bool = False,
                  overlay_max: int = 4096, gt=None, amp: bool = False, device: str = "cpu",
                  batch_size: int = 4, blend: str = BLEND, progress: bool | None = False
                  ) -> dict[str, Any]:
    """Predict one image through ``shared.engine`` (overlapping tiles blended by ``blend``),
    write its outputs; return their paths and the confusion counts (tp, fp, fn over the
    valid pixels, if ``gt``)."""
    from shared import engine

    h, w = source.height, source.width
    tile = min(tile, -(-max(h, w) // 32) * 32)  # no bigger than the image needs
    overlap = min(overlap, tile // 2)
    step = max(1, -(-max(h, w) // overlay_max))
    tally = _Tally(threshold, gt, step if overlay else None)
    with contextlib.ExitStack() as stack:
        if source.tiff:
            files = _tiff_writers(stack, source, out_dir, prob, threshold)
            writers = [*files.values(), tally]
        else:
            png = PngOutputs(source, out_dir, prob, threshold)
            writers = [png, tally]
        engine.run(source.reader, torch_predict_fn(model, device, amp), h, w, tile, writers,
                   stride=tile - overlap, edge="pad", blend=blend, batch_size=batch_size,
                   progress=progress)
    result: dict[str, Any] = {k: str(f.path) for k, f in files.items()} if source.tiff \
        else png.close()
    if overlay:
        result["overlay"] = _write_overlay(source, tally.small, step, out_dir)
    result["counts"] = [int(c) for c in tally.counts]
    return result


def predict_scene(model, path: Path, out_dir: Path, *, gt=None, **kw) -> dict[str, Any]:
    """One input file, opened, predicted (:func:`predict_image` keywords) and closed: the unit
    of work per scene."""
    source = open_source(path)
    try:
        if gt is not None and gt.shape != (source.height, source.width):
            raise PredictError(f"{path}: ground-truth mask size {gt.shape} differs from the "
                               f"image size {(source.height, source.width)}")
        return predict_image(model, source, out_dir, gt=gt, **kw)
    finally:
        source.close()


def list_inputs(path: Path | list[Path]) -> list[Path]:
    if isinstance(path, list):
        return [f for one in path for f in list_inputs(one)]
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PredictError(f"{path}: no images in the folder")
        return files
    raise PredictError(f"{path}: input not found")


def load_predictor(checkpoint: str, arch: str, device: str, precision: str | None,
                   amp: bool, threads: int) -> tuple:
    """(model, its name, device, amp) of a worker process (built once per worker by
    :mod:`shared.cluster`; in-process the same call): torch threads, device and precision
    resolved where the model runs."""
    import torch

    from mars_cracknet.checkpoint import load_model
    from shared.torch_runtime import pick_device, resolve_precision

    torch.set_num_threads(max(1, int(threads)))
    dev = str(pick_device(device))
    if precision is not None:  # a resolved name (fp32, bf16; fp16 on a GPU without bf16)
        amp = resolve_precision(precision, dev)
    model, name = load_model(Path(checkpoint), None if arch == "auto" else arch, dev)
    return model, name, dev, amp


def predict_task(loaded: tuple, task, out: Path) -> dict[str, Any]:
    """One image of the task list (worker side): :func:`predict_scene`, its ground truth read
    from the path in the task; returns the confusion counts and the written paths."""
    from mars_cracknet.data.mars import load_mask

    model, _name, device, amp = loaded
    o = dict(task.options)
    gt_path = o.pop("gt")
    gt = load_mask(Path(gt_path)) > 0 if gt_path is not None else None
    res = predict_scene(model, Path(task.path), out, gt=gt, amp=amp, device=device, **o)
    return {**res, "image": Path(task.path).stem, "labelled": gt is not None}


def predict_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every input as one task of :mod:`shared.cluster` (``--scheduler``: on a Dask cluster,
    else here); the metrics from the done scenes."""
    import numpy as np

    from mars_cracknet.data.mars import find_image
    from mars_cracknet.utils.metrics import METRICS, scores
    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.cli import progress_enabled
    from shared.cluster import (
        Job,
        SceneTask,
        done_records,
        file_signature,
        report_failures,
        run_scenes,
        user_error_types,
    )

    inputs = list_inputs(args.inputs)
    if args.masks is not None and not args.masks.is_dir():
        raise PredictError(f"{args.masks}: mask folder not found")
    gt_paths: dict[Path, Path] = {}
    if args.masks is not None:  # check every mask exists before any work
        for path in inputs:
            gt_path = find_image(args.masks, path.stem)
            if gt_path is None:
                raise PredictError(f"{args.masks}/{path.stem}.png: no ground-truth mask for "
                                   f"{path}")
            gt_paths[path] = gt_path
    scheduler = getattr(args, "scheduler", None)
    load_args = (str(Path(args.checkpoint).resolve()), args.arch, args.device, args.precision,
                 bool(getattr(args, "amp", False)), args.threads)
    loaded = None if scheduler else load_predictor(*load_args)
    args.out.mkdir(parents=True, exist_ok=True)
    kw = dict(threshold=args.threshold, tile=args.tile, overlap=args.overlap, prob=args.prob,
              overlay=args.overlay, overlay_max=args.overlay_max)
    tasks = [SceneTask(path.name, str(path),
                       {**kw, "gt": str(gt_paths[path]) if path in gt_paths else None})
             for path in inputs]
    job = Job(work=predict_task, out=str(args.out), load=load_predictor, load_args=load_args,
              signature=f"mars_cracknet {file_signature(load_args[0])} {args.arch} "
                        f"{sorted(kw.items())}",
              user_errors=user_error_types())
    show = progress_enabled(args.no_progress) and len(inputs) >= 2
    summary = run_scenes(job, tasks, scheduler, threads=args.threads, resource=loaded,
                         progress=show, desc="predict")
    report_failures(summary)  # one line each; every input failed: the error, exit 2
    rows = [{"image": rec["image"], **scores(*rec["counts"])}
            for _task, rec in done_records(args.out, tasks) if rec.get("labelled")]
    name = loaded[1] if loaded else args.arch
    result: dict[str, Any] = {"model": name, "checkpoint": str(args.checkpoint),
                              "n_images": len(inputs), "done": len(summary.done),
                              "skipped": len(summary.skipped), "failed": summary.failed}
    if rows:
        mean = {m: float(np.mean([r[m] for r in rows])) for m in METRICS}
        lines = ["image," + ",".join(METRICS)]
        lines += [r["image"] + "," + ",".join(f"{r[m]:.6f}" for m in METRICS) for r in rows]
        lines.append("mean," + ",".join(f"{mean[m]:.6f}" for m in METRICS))
        atomic_write_text(args.out / "metrics.csv", "\n".join(lines) + "\n")
        result.update({"threshold": args.threshold, "mean": mean, "per_image": rows})
        atomic_write_json(args.out / "metrics.json", result)
    return result


def _main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    _resolve_model_args(args, p)
    if args.tile < 32 or args.tile % 32:
        p.error("--tile must be a positive multiple of 32")
    if not 0 <= args.overlap < args.tile:
        p.error("--overlap must be in [0, tile)")
    if not 0 < args.threshold < 1:
        p.error("--threshold must be in (0, 1)")
    import torch

    from shared.runs import check_not_inputs, check_output_dir

    check_output_dir(args.out)
    check_not_inputs([args.out], [*args.inputs, args.checkpoint])
    torch.set_num_threads(max(1, args.threads))
    result = predict_all(args)
    msg = (f"predicted {result['n_images']} image(s) with {result['model']} -> {args.out} "
           f"({result['done']} done, {result['skipped']} done before, "
           f"{len(result['failed'])} failed)")
    if "mean" in result:
        m = result["mean"]
        msg += (f"; mean precision {m['precision']:.4f} recall {m['recall']:.4f} "
                f"dice {m['dice']:.4f} jaccard {m['jaccard']:.4f}")
    print(msg)
    return 0


def main(argv: list[str] | None = None) -> int:
    from shared.cli import help_first

    if (rc := help_first(_main, argv)) is not None:
        return rc
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
