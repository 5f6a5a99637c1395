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
import warnings
from pathlib import Path
from typing import Any

from shared.rasters import RASTER_SUFFIXES as _RASTER_SUFFIXES
from shared.rasters import RasterError
from shared.runs import UserError

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
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
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
class ArraySource:
    """An image held in memory (PNG/JPG, or a small raster)."""

    georef = False

    def __init__(self, path: Path):
        from mars_cracknet.data.mars import load_image

        self.path = path
        self.image = load_image(path)
        self.height, self.width = self.image.shape[:2]

    def read(self, row: int, col: int, h: int, w: int):
        import numpy as np

        out = np.zeros((h, w, 3), np.uint8)
        part = self.image[row:row + h, col:col + w]
        out[:part.shape[0], :part.shape[1]] = part
        return out

    def preview(self, step: int):
        return self.image[::step, ::step]

    def valid(self, row: int, n: int):
        import numpy as np

        return np.ones((n, self.width), bool)

    def close(self) -> None:
        pass


class RasterSource:
    """A raster read window by window (GeoTIFF, HiRISE JP2, ...), stretched to uint8.

    Pixels equal to the raster's nodata value, or NaN, in any band are invalid: the network
    sees 0 there, and the outputs mark them as nodata. A raster without any valid pixel (in a
    decimated read) is an error.
    """

    def __init__(self, path: Path):
        import numpy as np
        import rasterio

        from shared.rasters import check_bands, raster_info

        self.path = path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            self.info = raster_info(path)
            self.ds = rasterio.open(path)
        check_bands(path, self.info.count, model="Mars-CrackNet (an RGB or greyscale model)")
        self.height, self.width = self.info.height, self.info.width
        self.georef = self.info.crs is not None or not self.info.transform.is_identity
        self.bands = [1, 2, 3] if self.info.count >= 3 else [1]
        self.nodata = self.info.nodata
        self.is_float = np.dtype(self.info.dtype).kind == "f"
        step = max(1, max(self.height, self.width) // 1024)
        small = self._read(lambda: self.ds.read(
            self.bands, out_shape=(len(self.bands), max(1, self.height // step),
                                   max(1, self.width // step))))
        valid = small[:, self._valid(small)]
        if valid.size == 0:
            raise PredictError(f"{path}: no valid pixels (every pixel is nodata"
                               f"{' or NaN' if self.is_float else ''}); nothing to predict")
        self.has_nodata = self.nodata is not None or self.is_float
        if self.info.dtype == "uint8":
            self.lo, self.hi = 0.0, 255.0
        else:  # one 0.5-99.5 % stretch of the valid pixels of a decimated read
            self.lo, self.hi = (float(v) for v in np.percentile(valid, [0.5, 99.5]))
            if self.hi <= self.lo:
                self.hi = self.lo + 1.0

    def _read(self, fn):
        import rasterio

        try:
            return fn()
        except (rasterio.errors.RasterioError, OSError, RasterError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PredictError(f"{self.path}: cannot read the raster's pixels (truncated or "
                               f"corrupt file?): {reason}") from None

    def _valid(self, arr):
        """(rows, cols) True where every band holds a value."""
        import numpy as np

        ok = np.ones(arr.shape[1:], bool)
        if self.is_float:
            ok &= np.isfinite(arr).all(axis=0)
        if self.nodata is not None and not (isinstance(self.nodata, float)
                                            and np.isnan(self.nodata)):
            ok &= (arr != self.nodata).all(axis=0)
        return ok

    def _to_rgb(self, arr):
        import numpy as np

        ok = self._valid(arr)
        arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if (self.lo, self.hi) != (0.0, 255.0):
            arr = (arr - self.lo) / (self.hi - self.lo) * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        arr[:, ~ok] = 0
        arr = arr.transpose(1, 2, 0)
        return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr

    def _window(self, row: int, col: int, h: int, w: int):
        from shared.rasters import read_window

        fill = self.nodata if self.nodata is not None else 0
        return self._read(lambda: read_window(self.ds, (col, row, w, h), bands=self.bands,
                                              fill_value=fill))

    def read(self, row: int, col: int, h: int, w: int):
        return self._to_rgb(self._window(row, col, h, w))

    def valid(self, row: int, n: int):
        """Validity of ``n`` full-width rows from ``row``."""
        return self._valid(self._window(row, 0, n, self.width))

    def preview(self, step: int):
        return self._to_rgb(self._read(lambda: self.ds.read(
            self.bands, out_shape=(len(self.bands), -(-self.height // step),
                                   -(-self.width // step)))))

    def close(self) -> None:
        self.ds.close()


def open_source(path: Path):
    if path.suffix.lower() in RASTER_SUFFIXES:
        from shared.rasters import RasterError

        try:
            return RasterSource(path)
        except RasterError as exc:
            raise PredictError(str(exc)) from None
    return ArraySource(path)


# --------------------------------------------------------------------------- prediction
class TiffOutputs:
    """Mask (and probability) GeoTIFFs with the input's CRS and transform, written strip by
    strip; nodata pixels are masked (GDAL per-dataset mask) and hold 0."""

    def __init__(self, stack: contextlib.ExitStack, source, out_dir: Path, prob: bool):
        from shared.rasters import geotiff_writer

        stem, self.width = source.path.stem, source.width
        kw = {"width": source.width, "height": source.height, "count": 1, "dtype": "uint8",
              "crs": source.info.crs, "transform": source.info.transform}
        self.paths = {"mask": out_dir / f"{stem}_mask.tif"}
        if prob:
            self.paths["prob"] = out_dir / f"{stem}_prob.tif"
        self.files = {k: stack.enter_context(geotiff_writer(p, **kw))
                      for k, p in self.paths.items()}
        from shared.rasters import describe_class_band

        describe_class_band(self.files["mask"], {0: "background", 255: "crack"},
                            {0: (0, 0, 0), 255: (230, 30, 30)},
                            description="crack mask (255 = crack, 0 = background)")
        if "prob" in self.files:
            self.files["prob"].set_band_description(1, "crack probability x 255")

    def write(self, row0: int, m, p, valid) -> None:
        import numpy as np
        from rasterio.windows import Window

        win = Window(0, row0, self.width, m.shape[0])
        arrays = {"mask": (m * 255).astype(np.uint8), "prob": np.round(p * 255).astype(np.uint8)}
        for key, dst in self.files.items():
            arr = arrays[key]
            if valid is not None:
                arr[~valid] = 0
                dst.write_mask(valid.astype(np.uint8) * 255, window=win)
            dst.write(arr[None], window=win)

    def close(self) -> dict[str, str]:
        return {k: str(p) for k, p in self.paths.items()}


class PngOutputs:
    """Mask (and probability) PNGs, assembled in memory (plain images)."""

    def __init__(self, source, out_dir: Path, prob: bool):
        import numpy as np

        self.stem, self.out_dir = source.path.stem, out_dir
        shape = (source.height, source.width)
        self.arrays = {"mask": np.zeros(shape, np.uint8)}
        if prob:
            self.arrays["prob"] = np.zeros(shape, np.uint8)

    def write(self, row0: int, m, p, valid) -> None:  # noqa: ARG002 - plain images are valid
        import numpy as np

        self.arrays["mask"][row0:row0 + m.shape[0]] = m * 255
        if "prob" in self.arrays:
            self.arrays["prob"][row0:row0 + m.shape[0]] = np.round(p * 255)

    def close(self) -> dict[str, str]:
        from PIL import Image

        from shared.atomic import atomic_path

        out = {}
        for name, arr in self.arrays.items():
            path = self.out_dir / f"{self.stem}_{name}.png"
            with atomic_path(path) as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
            out[name] = str(path)
        return out


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


def predict_image(model, source, out_dir: Path, *, threshold: float = 0.5, tile: int = 512,
                  overlap: int = 64, prob: bool = False, overlay: bool = False,
                  overlay_max: int = 4096, gt=None, amp: bool = False, device: str = "cpu"
                  ) -> dict[str, Any]:
    """Predict one image, write its outputs; return their paths and the confusion counts
    (tp, fp, fn over the valid pixels, if ``gt``)."""
    import numpy as np
    import torch

    from mars_cracknet.inference import iter_tiled_probability, predict_tensor

    h, w = source.height, source.width
    tile = min(tile, -(-max(h, w) // 32) * 32)  # no bigger than the image needs
    overlap = min(overlap, tile // 2)

    def run(rgb):
        x = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float()[None] / 255.0
        return predict_tensor(model, x.to(device), amp=amp)[0, 0].cpu().numpy()

    step = max(1, -(-max(h, w) // overlay_max))
    small_mask: list = []
    counts = np.zeros(3, np.int64)  # tp, fp, fn
    tiff = source.georef or getattr(source, "has_nodata", False)
    with contextlib.ExitStack() as stack:
        outputs = TiffOutputs(stack, source, out_dir, prob) if tiff else \
            PngOutputs(source, out_dir, prob)
        for row0, p in iter_tiled_probability(source.read, h, w, run, tile=tile,
                                              overlap=overlap):
            valid = source.valid(row0, p.shape[0]) if tiff else None
            m = p > threshold
            if valid is not None:
                m &= valid
            outputs.write(row0, m, p, valid)
            if gt is not None:
                g = gt[row0:row0 + m.shape[0]]
                if valid is not None:
                    g = g & valid
                counts[:] += (np.count_nonzero(m & g), np.count_nonzero(m & ~g),
                              np.count_nonzero(~m & g))
            if overlay:
                small_mask.append(m[(-row0) % step::step, ::step])
    result: dict[str, Any] = outputs.close()
    if overlay:
        result["overlay"] = _write_overlay(source, small_mask, step, out_dir)
    result["counts"] = [int(c) for c in counts]
    return result


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


def predict_all(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    from tqdm import tqdm

    from mars_cracknet.data.mars import find_image, load_mask
    from mars_cracknet.inference import pick_device
    from mars_cracknet.utils.metrics import METRICS, scores
    from shared.atomic import atomic_write_json, atomic_write_text

    device = str(pick_device(args.device))
    if args.precision is not None:
        from shared.cli import precision_to_amp

        args.amp = precision_to_amp(args.precision, device)
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
    from mars_cracknet.checkpoint import load_model

    model, name = load_model(args.checkpoint, None if args.arch == "auto" else args.arch, device)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    from shared.cli import progress_enabled

    show = progress_enabled(args.no_progress) and len(inputs) >= 2
    for path in tqdm(inputs, desc="predict", disable=not show):
        gt = None
        if args.masks is not None:
            gt_path = gt_paths[path]
            gt = load_mask(gt_path) > 0
        source = open_source(path)
        try:
            if gt is not None and gt.shape != (source.height, source.width):
                raise PredictError(f"{gt_path}: mask size {gt.shape} differs from image size "
                                   f"{(source.height, source.width)} of {path}")
            out = predict_image(model, source, args.out, threshold=args.threshold,
                                tile=args.tile, overlap=args.overlap, prob=args.prob,
                                overlay=args.overlay, overlay_max=args.overlay_max, gt=gt,
                                amp=args.amp, device=device)
        finally:
            source.close()
        if gt is not None:
            rows.append({"image": path.stem, **scores(*out["counts"])})
    result: dict[str, Any] = {"model": name, "checkpoint": str(args.checkpoint),
                              "n_images": len(inputs)}
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
    msg = f"predicted {result['n_images']} image(s) with {result['model']} -> {args.out}"
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
