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

    python -m mars_cracknet.predict runs/mars_cracknet/resunet_semi test/imgs --out pred/
    python -m mars_cracknet.predict best.safetensors ESP_012345_1234_RED.JP2 --out pred/ \\
        --tile 1024 --overlay
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".jp2", ".img")
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img")


class PredictError(ValueError):
    """A user input problem; the message names the file."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Predict crack masks with a Mars-CrackNet / UNet checkpoint (tiled, any "
                    "size; GeoTIFF in, GeoTIFF out).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::")[1] if "Examples::" in __doc__ else None)
    p.add_argument("checkpoint", type=Path,
                   help="weights (.safetensors) or a run folder (its best.safetensors is used)")
    p.add_argument("input", type=Path, help="an image or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--model", choices=["auto", "resunet", "unet"], default="auto",
                   help="network (default: read from the checkpoint)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--tile", type=int, default=512, help="tile side, a multiple of 32")
    p.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels")
    p.add_argument("--prob", action="store_true", help="also write the probability map")
    p.add_argument("--overlay", action="store_true", help="also write an overlay PNG")
    p.add_argument("--overlay-max", type=int, default=4096)
    p.add_argument("--masks", type=Path, help="ground-truth masks: report P, R, Dice, Jaccard")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    return p


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

    def close(self) -> None:
        pass


class RasterSource:
    """A raster read window by window (GeoTIFF, HiRISE JP2, ...), stretched to uint8."""

    def __init__(self, path: Path):
        import numpy as np
        import rasterio

        from shared.rasters import raster_info

        self.path = path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            self.info = raster_info(path)
            self.ds = rasterio.open(path)
        self.height, self.width = self.info.height, self.info.width
        self.georef = self.info.crs is not None or not self.info.transform.is_identity
        self.bands = [1, 2, 3] if self.info.count >= 3 else [1]
        if self.info.dtype == "uint8":
            self.lo, self.hi = 0.0, 255.0
        else:  # global 0.5-99.5 % stretch from a decimated read (the same for every tile)
            step = max(1, max(self.height, self.width) // 1024)
            small = self.ds.read(self.bands, out_shape=(len(self.bands),
                                                        max(1, self.height // step),
                                                        max(1, self.width // step)))
            valid = small[small != self.info.nodata] if self.info.nodata is not None else small
            valid = valid if valid.size else small
            self.lo, self.hi = (float(v) for v in np.percentile(valid, [0.5, 99.5]))
            if self.hi <= self.lo:
                self.hi = self.lo + 1.0

    def _to_rgb(self, arr):
        import numpy as np

        arr = arr.astype(np.float32)
        if (self.lo, self.hi) != (0.0, 255.0):
            arr = (arr - self.lo) / (self.hi - self.lo) * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr

    def read(self, row: int, col: int, h: int, w: int):
        from shared.rasters import read_window

        return self._to_rgb(read_window(self.ds, (col, row, w, h), bands=self.bands))

    def preview(self, step: int):
        arr = self.ds.read(self.bands, out_shape=(len(self.bands), -(-self.height // step),
                                                  -(-self.width // step)))
        return self._to_rgb(arr)

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
def load_model(checkpoint: Path, model_name: str = "auto", device: str = "cpu"):
    """(model in eval mode, its name) from a weights file or a run folder."""
    from mars_cracknet.checkpoint import checkpoint_info, load_weights
    from mars_cracknet.models import MODELS, build_model

    if checkpoint.is_dir():
        checkpoint = checkpoint / "best.safetensors"
    info = checkpoint_info(checkpoint)
    stored = info["model"]
    if model_name == "auto":
        if stored not in MODELS:
            raise PredictError(f"{checkpoint}: the checkpoint does not say its model; pass "
                               "--model resunet or --model unet")
        model_name = stored
    elif stored is not None and stored != model_name:
        raise PredictError(f"{checkpoint}: checkpoint is for model {stored!r}, "
                           f"not {model_name!r}")
    try:
        model = build_model(model_name, num_classes=info["num_classes"], width=info["width"])
    except ValueError as exc:
        raise PredictError(f"{checkpoint}: {exc}") from None
    load_weights(checkpoint, model, model_name)
    return model.to(device).eval(), model_name


def predict_image(model, source, out_dir: Path, *, threshold: float = 0.5, tile: int = 512,
                  overlap: int = 64, prob: bool = False, overlay: bool = False,
                  overlay_max: int = 4096, gt=None, amp: bool = False, device: str = "cpu"
                  ) -> dict[str, Any]:
    """Predict one image, write its outputs; return its confusion counts (if ``gt``)."""
    import numpy as np
    import torch

    from mars_cracknet.inference import iter_tiled_probability, predict_tensor
    from shared.atomic import atomic_path

    stem = source.path.stem
    h, w = source.height, source.width
    tile = min(tile, -(-max(h, w) // 32) * 32)  # no bigger than the image needs
    overlap = min(overlap, tile // 2)

    def run(rgb):
        x = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float()[None] / 255.0
        return predict_tensor(model, x.to(device), amp=amp)[0, 0].cpu().numpy()

    step = max(1, -(-max(h, w) // overlay_max))
    small_mask = [] if overlay else None
    counts = np.zeros(3, np.int64)  # tp, fp, fn
    outputs: dict[str, Any] = {}

    def consume(row0: int, p: np.ndarray, write) -> None:
        m = p > threshold
        write(row0, m, p)
        if gt is not None:
            g = gt[row0:row0 + m.shape[0]]
            counts[:] += (np.count_nonzero(m & g), np.count_nonzero(m & ~g),
                          np.count_nonzero(~m & g))
        if small_mask is not None:
            first = (-row0) % step
            small_mask.append(m[first::step, ::step])

    strips = iter_tiled_probability(source.read, h, w, run, tile=tile, overlap=overlap)
    if source.georef:
        from rasterio.windows import Window

        from shared.rasters import geotiff_writer

        kw = {"width": w, "height": h, "count": 1, "dtype": "uint8", "crs": source.info.crs,
              "transform": source.info.transform}
        mask_path = out_dir / f"{stem}_mask.tif"
        prob_path = out_dir / f"{stem}_prob.tif"
        with contextlib.ExitStack() as stack:
            dm = stack.enter_context(geotiff_writer(mask_path, **kw))
            dp = stack.enter_context(geotiff_writer(prob_path, **kw)) if prob else None

            def write(row0, m, p):
                win = Window(0, row0, w, m.shape[0])
                dm.write((m * 255).astype(np.uint8)[None], window=win)
                if dp is not None:
                    dp.write(np.round(p * 255).astype(np.uint8)[None], window=win)

            for row0, p in strips:
                consume(row0, p, write)
        outputs["mask"] = str(mask_path)
        if prob:
            outputs["prob"] = str(prob_path)
    else:
        from PIL import Image

        full_mask = np.zeros((h, w), np.uint8)
        full_prob = np.zeros((h, w), np.uint8) if prob else None

        def write(row0, m, p):
            full_mask[row0:row0 + m.shape[0]] = m * 255
            if full_prob is not None:
                full_prob[row0:row0 + m.shape[0]] = np.round(p * 255)

        for row0, p in strips:
            consume(row0, p, write)
        for name, arr in (("mask", full_mask), ("prob", full_prob)):
            if arr is None:
                continue
            path = out_dir / f"{stem}_{name}.png"
            with atomic_path(path) as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
            outputs[name] = str(path)
    if small_mask is not None:
        from PIL import Image

        m = np.concatenate(small_mask, axis=0)
        base = source.preview(step)[:m.shape[0], :m.shape[1]].astype(np.float32)
        m = m[:base.shape[0], :base.shape[1]]
        base[m] = 0.45 * base[m] + 0.55 * np.array([255, 0, 0], np.float32)
        path = out_dir / f"{stem}_overlay.png"
        with atomic_path(path) as tmp:
            Image.fromarray(base.astype(np.uint8)).save(tmp, format="PNG")
        outputs["overlay"] = str(path)
    outputs["counts"] = [int(c) for c in counts]
    return outputs


def list_inputs(path: Path) -> list[Path]:
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
    import torch
    from tqdm import tqdm

    from mars_cracknet.data.mars import find_image, load_mask
    from mars_cracknet.utils.metrics import METRICS, scores
    from shared.atomic import atomic_write_json, atomic_write_text

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    inputs = list_inputs(args.input)
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
    model, name = load_model(args.checkpoint, args.model, device)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in tqdm(inputs, desc="predict", disable=len(inputs) < 2):
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


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.tile < 32 or args.tile % 32:
        p.error("--tile must be a positive multiple of 32")
    if not 0 <= args.overlap < args.tile:
        p.error("--overlap must be in [0, tile)")
    if not 0 < args.threshold < 1:
        p.error("--threshold must be in (0, 1)")
    import torch

    from mars_cracknet.checkpoint import CheckpointError
    from mars_cracknet.data.mars import DatasetError

    torch.set_num_threads(max(1, args.threads))
    try:
        result = predict_all(args)
    except (PredictError, CheckpointError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    msg = f"predicted {result['n_images']} image(s) with {result['model']} -> {args.out}"
    if "mean" in result:
        m = result["mean"]
        msg += (f"; mean precision {m['precision']:.4f} recall {m['recall']:.4f} "
                f"dice {m['dice']:.4f} jaccard {m['jaccard']:.4f}")
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
