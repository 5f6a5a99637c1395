"""Predict S5Mars classes for images: colour-coded masks, overlays and raw-id label PNGs.

``python -m s5mars_ssl.predict img.jpg --model runs/s5mars_ssl/quick_full/last.pt
--out preds/``. For each image: ``<stem>_mask.png`` (class palette), ``<stem>_overlay.png``
(image blended with the mask) and ``<stem>_ids.png`` (raw ids 1..9 as in the S5Mars labels).
Large images can be predicted with a sliding window (``--sliding``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}


def read_rgb(path: Path):
    """An RGB image (grey is expanded); anything with another band count is a named error."""
    from shared.errors import UserError
    from shared.images import ImageReadError, read_image

    bands = None
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import rasterio

            with rasterio.open(path) as src:
                bands = src.count
        except Exception:  # noqa: BLE001 - left to the image reader's error below
            bands = None
    if bands is not None and bands not in (1, 3, 4):
        raise UserError(f"{path}: {bands}-band image; S5Mars models take RGB (3-band) images")
    try:
        return read_image(path, mode="RGB")
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unreadable image is a user error
        raise UserError(f"{path}: not a readable RGB image ({exc})") from None


def predict_one(model, path: Path, out: Path, mean, std, *, device: str = "cpu",
                sliding: bool = False, crop: int = 512, stride: int = 384, alpha: float = 0.5,
                autocast=None) -> list[Path]:
    """One image's ``_mask``, ``_overlay`` and ``_ids`` PNGs (the per-scene task; the model
    is loaded once by the caller). ``--sliding`` tiles with the project's engine
    (``predict_sliding``: ``shared.engine``, the original's plain average)."""
    import contextlib

    import numpy as np
    import torch
    from PIL import Image

    from s5mars_ssl.augseg.dataset.augmentation import normalize
    from s5mars_ssl.augseg.utils.metrics import predict_sliding, predict_whole
    from s5mars_ssl.constants import colorize, train_to_raw
    from shared.atomic import atomic_path

    img = read_rgb(path)
    x = torch.from_numpy(normalize(img, mean, std))[None].to(device)
    with torch.no_grad(), (autocast or contextlib.nullcontext)():
        prob = (predict_sliding(model, x, crop, stride, model.num_classes) if sliding
                else predict_whole(model, x)).float()
    pred = prob.argmax(1)[0].cpu().numpy().astype(np.uint8)
    colour = colorize(pred)
    overlay = (img.astype(np.float32) * (1 - alpha) + colour * alpha).astype(np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, arr in (("mask", colour), ("overlay", overlay), ("ids", train_to_raw(pred))):
        target = out / f"{path.stem}_{suffix}.png"
        with atomic_path(target) as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")
        written.append(target)
    return written


def load_predictor(checkpoint: str, weights: str, device: str, precision: str | bool,
                   threads: int | None = None) -> dict:
    """The model of a worker process (built once per worker by :mod:`shared.cluster`;
    in-process the same call) with its normalisation, device and autocast."""
    import numpy as np

    from s5mars_ssl.checkpoint import load_model
    from shared.torch_runtime import pick_device, precision_for

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    device = str(pick_device(device))
    model, info = load_model(checkpoint, weights, device)
    return {"model": model, "used": info["weights"], "device": device,
            "mean": np.asarray(info["normalization"]["mean"], np.float32),
            "std": np.asarray(info["normalization"]["std"], np.float32),
            "autocast": precision_for(precision, device).autocast}  # auto|fp32|bf16 (old amp)


def predict_task(loaded: dict, task, out: Path) -> dict:
    """One image of the task list (worker side): :func:`predict_one`."""
    files = predict_one(loaded["model"], Path(task.path), out, loaded["mean"], loaded["std"],
                        device=loaded["device"], autocast=loaded["autocast"], **task.options)
    return {"files": [str(f) for f in files]}


def predict_images(checkpoint, inputs: list[Path], out: Path, weights: str = "teacher",
                   device: str = "cpu", sliding: bool = False, crop: int = 512,
                   stride: int = 384, alpha: float = 0.5, progress: bool = True,
                   precision: str | bool = "fp32", scheduler: str | None = None) -> list[Path]:
    """Every image as one task of :mod:`shared.cluster` (``scheduler``: on a Dask cluster,
    else here); returns the files of the done images."""
    from shared.cluster import (
        Job,
        SceneTask,
        done_records,
        file_signature,
        local_threads,
        report_failures,
        run_scenes,
        user_error_types,
    )

    out = Path(out)
    threads = local_threads(scheduler)
    load_args = (str(Path(checkpoint).resolve()), weights, str(device), precision, threads)
    loaded = None if scheduler else load_predictor(*load_args)
    opts = dict(sliding=sliding, crop=crop, stride=stride, alpha=alpha)
    tasks = [SceneTask(Path(p).name, str(p), opts) for p in inputs]
    job = Job(work=predict_task, out=str(out), load=load_predictor, load_args=load_args,
              signature=f"s5mars_ssl {file_signature(load_args[0])} {weights} "
                        f"{sorted(opts.items())}",
              user_errors=user_error_types())
    desc = f"predict ({loaded['used']})" if loaded else "predict"
    summary = run_scenes(job, tasks, scheduler, threads=threads or 1, resource=loaded,
                         progress=progress, desc=desc)
    report_failures(summary)  # one line each; every input failed: the error, exit 2
    return [Path(f) for _task, rec in done_records(out, tasks) for f in rec["files"]]


def _main(argv=None) -> int:
    from shared.cli import (
        add_precision_argument,
        add_progress_argument,
        finish_parser,
        hidden_alias,
    )

    p = argparse.ArgumentParser(
        prog="s5mars-predict",
        description="Colour-coded S5Mars class masks and overlays for images, with the teacher "
                    "or student weights of a checkpoint.")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files or folders")
    hidden_alias(p, "--input", dest="input_opt", nargs="+")
    p.add_argument("--model", dest="checkpoint", metavar="PATH",
                   help="trained weights (required): last.pt/best.pt of a run, or the "
                        "original's ckpt_best.pth / ckpt.pth")
    hidden_alias(p, "--checkpoint", dest="checkpoint")
    p.add_argument("--out", required=True, help="output folder (required)")
    p.add_argument("--weights", default="teacher", choices=["teacher", "student"],
                   help="teacher (default; a supervised run falls back to its student) or student")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N; a device that is "
                   "not there is an error")
    add_precision_argument(p)
    add_progress_argument(p, aliases=())
    p.add_argument("--sliding", action="store_true", help="sliding-window inference")
    p.add_argument("--crop", type=int, default=512, help="sliding window size")
    p.add_argument("--stride", type=int, default=384, help="sliding window stride")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    from shared.cluster import add_scheduler_argument

    add_scheduler_argument(p)
    finish_parser(p)
    args = p.parse_args(argv)
    from s5mars_ssl.runtime import passive_openmp

    passive_openmp()
    from shared.errors import UserError
    from shared.runs import check_output_dir

    if not 0.0 <= args.alpha <= 1.0:
        raise UserError("--alpha must be within 0..1")
    if args.crop < 32 or args.stride < 1:
        raise UserError("--crop must be >= 32 and --stride >= 1")
    args.input = list(args.inputs) + list(getattr(args, "input_opt", None) or [])
    if not args.input:
        p.error("give the images to predict (files or folders)")
    if args.checkpoint is None:
        p.error("--model PATH is required (the trained weights)")
    check_output_dir(args.out)
    from shared.runs import check_paths

    # issue 27: the output folder is neither an input nor inside one
    check_paths([args.out], [*args.input, args.checkpoint], containing=False)
    inputs: list[Path] = []
    for item in args.input:
        path = Path(item)
        if path.is_dir():
            inputs += sorted(q for q in path.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            inputs.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    if not inputs:
        raise UserError("no image found in the inputs")
    from shared.cli import progress_enabled
    from shared.torch_runtime import pick_device

    device = str(pick_device(args.device))
    files = predict_images(args.checkpoint, inputs, Path(args.out), args.weights, device,
                           args.sliding, args.crop, args.stride, args.alpha,
                           progress=progress_enabled(args.no_progress),
                           precision=args.precision, scheduler=args.scheduler)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


def main(argv=None) -> int:
    from s5mars_ssl.runtime import passive_openmp
    from shared.runs import cli_main

    passive_openmp()
    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
