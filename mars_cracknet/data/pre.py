"""Preprocessing: labelme polygons to masks, and random labelled crops from large images.

* ``labelme_to_mask(json)`` draws every shape of a labelme export (polygon, line, linestrip,
  rectangle, circle, point) into a crack mask (255) directly, without the labelme binary.
  Lines are drawn ``--line-width`` pixels wide.
* ``cut_random_crops`` cuts ``n`` random ``size`` x ``size`` crops (default 50 of 336, as the
  original) from a large labelled image and writes them in the ``imgs/ masks/ lists/`` layout.

CLI::

    python -m mars_cracknet.data.pre labelme a.json b.json --out data/ --list mars_test
    python -m mars_cracknet.data.pre crops --images big/imgs --masks big/masks --out data/ \\
        --n 50 --size 336 --list mars_train
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from shared.atomic import atomic_path, atomic_write_text
from shared.errors import UserError


class PreprocessError(UserError):
    """A preprocessing input is missing or malformed; the message names the file."""


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _thick_polyline(shape: tuple[int, int], pts: np.ndarray, closed: bool, width: int
                    ) -> np.ndarray:
    """A polyline exactly ``width`` pixels across (OpenCV's own thickness rounds up to odd
    widths of 2 * (t // 2) + 1): a 1-px line dilated by a ``width`` x ``width`` disk."""
    line = np.zeros(shape, np.uint8)
    cv2.polylines(line, [pts], closed, 255, 1)
    if width > 1:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
        line = cv2.dilate(line, disk)
    return line


def labelme_to_mask(json_path: str | Path, line_width: int = 3,
                    labels: set[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, mask uint8 {0, 255}) from one labelme JSON file.

    The image comes from the embedded ``imageData`` or from ``imagePath`` (relative to the JSON).
    ``labels`` restricts which shape labels count as crack (all shapes by default).
    """
    from PIL import Image

    json_path = Path(json_path)
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PreprocessError(f"{json_path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise PreprocessError(f"{json_path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "shapes" not in doc:
        raise PreprocessError(f"{json_path}: not a labelme export (no 'shapes')")
    if doc.get("imageData"):
        try:
            img = Image.open(io.BytesIO(base64.b64decode(doc["imageData"]))).convert("RGB")
        except (ValueError, OSError) as exc:
            raise PreprocessError(f"{json_path}: imageData is not a readable image ({exc})") \
                from None
    elif doc.get("imagePath"):
        img_path = json_path.parent / doc["imagePath"]
        if not img_path.is_file():
            raise PreprocessError(f"{json_path}: image {img_path} not found")
        img = Image.open(img_path).convert("RGB")
    else:
        raise PreprocessError(f"{json_path}: neither imageData nor imagePath")
    image = np.asarray(img)
    h, w = image.shape[:2]
    if doc.get("imageHeight") not in (None, h) or doc.get("imageWidth") not in (None, w):
        raise PreprocessError(f"{json_path}: imageHeight/imageWidth {doc.get('imageHeight')}x"
                              f"{doc.get('imageWidth')} differ from the image ({h}x{w})")
    mask = np.zeros((h, w), np.uint8)
    if not isinstance(doc["shapes"], list):
        raise PreprocessError(f"{json_path}: 'shapes' is not a list")
    for i, shape in enumerate(doc["shapes"]):
        if not isinstance(shape, dict):
            raise PreprocessError(f"{json_path}: shape {i} is not an object")
        if labels is not None and shape.get("label") not in labels:
            continue
        try:
            pts = np.asarray(shape.get("points", []), float).reshape(-1, 2)
        except (TypeError, ValueError):
            raise PreprocessError(f"{json_path}: shape {i} ({shape.get('label')!r}): points "
                                  "must be a list of [x, y] numbers") from None
        if not np.all(np.isfinite(pts)):
            raise PreprocessError(f"{json_path}: shape {i}: points must be finite numbers")
        pts = np.round(pts).astype(np.int32)
        kind = shape.get("shape_type") or "polygon"
        if len(pts) == 0:
            continue
        if kind == "polygon" and len(pts) >= 3:
            cv2.fillPoly(mask, [pts], 255)
        elif kind in ("line", "linestrip", "polygon"):
            mask |= _thick_polyline(mask.shape, pts, kind == "polygon", line_width)
        elif kind == "rectangle" and len(pts) == 2:
            cv2.rectangle(mask, tuple(pts[0]), tuple(pts[1]), 255, -1)
        elif kind == "circle" and len(pts) == 2:
            r = int(round(np.hypot(*(pts[1] - pts[0]))))
            cv2.circle(mask, tuple(pts[0]), r, 255, -1)
        elif kind == "point":
            cv2.circle(mask, tuple(pts[0]), max(1, line_width // 2), 255, -1)
        else:
            raise PreprocessError(f"{json_path}: unsupported shape_type {kind!r}")
    return image, mask


def cut_random_crops(image: np.ndarray, mask: np.ndarray, out: str | Path, stem: str,
                     n: int = 50, size: int = 336, rng: np.random.Generator | None = None
                     ) -> list[str]:
    """Cut ``n`` random crops; write ``imgs/`` and ``masks/`` under ``out``; return the stems."""
    if image.shape[:2] != mask.shape[:2]:
        raise PreprocessError(f"{stem}: image {image.shape[:2]} and mask {mask.shape[:2]} "
                              "differ in size")
    h, w = mask.shape[:2]
    if h < size or w < size:
        raise PreprocessError(f"{stem}: image {h}x{w} is smaller than the crop size {size}")
    rng = rng if rng is not None else np.random.default_rng(0)
    out = Path(out)
    stems = []
    for k in range(n):
        r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        name = f"{stem}_crop{k:03d}"
        _save_png(out / "imgs" / f"{name}.png", image[r:r + size, c:c + size])
        m = mask[r:r + size, c:c + size]
        _save_png(out / "masks" / f"{name}.png", ((m > 0) * 255).astype(np.uint8))
        stems.append(name)
    return stems


def _append_list(out: Path, name: str, stems: list[str]) -> None:
    path = out / "lists" / f"{name}.txt"
    old = path.read_text(encoding="utf-8").split() if path.is_file() else []
    merged = old + [s for s in stems if s not in old]
    atomic_write_text(path, "\n".join(merged) + "\n")


def main(argv: list[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv: list[str] | None = None) -> int:
    from shared.cli import finish_parser

    p = argparse.ArgumentParser(prog="python -m mars_cracknet.data.pre",
                                description="Mars-CrackNet preprocessing: labelme JSON to "
                                "masks, and random labelled crops from large images.")
    sub = p.add_subparsers(dest="cmd", required=True)
    lm = sub.add_parser("labelme", help="labelme JSON files -> imgs/, masks/, lists/<list>.txt")
    lm.add_argument("json", nargs="+", type=Path, help="labelme JSON files")
    lm.add_argument("--out", type=Path, required=True, help="dataset root to write (required)")
    lm.add_argument("--list", default="mars_train", help="list file to append to")
    lm.add_argument("--line-width", type=int, default=3, help="crack line width in pixels")
    lm.add_argument("--labels", nargs="*", help="shape labels that are cracks (default: all)")
    cr = sub.add_parser("crops", help="random labelled crops from large images")
    cr.add_argument("--images", type=Path, required=True, help="folder of large images")
    cr.add_argument("--masks", type=Path, required=True, help="folder of their masks")
    cr.add_argument("--out", type=Path, required=True, help="dataset root to write (required)")
    cr.add_argument("--n", type=int, default=50, help="crops per image (default 50)")
    cr.add_argument("--size", type=int, default=336, help="crop side (default 336)")
    cr.add_argument("--list", default="mars_train", help="list file to append to")
    cr.add_argument("--seed", type=int, default=0, help="seed of the crop positions")
    for parser in (p, lm, cr):
        finish_parser(parser)
    from shared.runs import declare_paths

    declare_paths(p, inputs=["json", "images", "masks"], folders=["out"])  # issue 27
    a = p.parse_args(argv)
    from mars_cracknet.data.mars import DatasetError, find_image, load_image, load_mask

    try:
        if a.cmd == "labelme":
            stems = []
            for jp in a.json:
                image, mask = labelme_to_mask(jp, a.line_width,
                                              set(a.labels) if a.labels else None)
                _save_png(a.out / "imgs" / f"{jp.stem}.png", image)
                _save_png(a.out / "masks" / f"{jp.stem}.png", mask)
                stems.append(jp.stem)
        else:
            if a.n < 1 or a.size < 16:
                p.error("--n must be >= 1 and --size >= 16")
            if not a.images.is_dir():
                raise PreprocessError(f"{a.images}: folder not found")
            rng = np.random.default_rng(a.seed)
            stems = []
            for img_path in sorted(a.images.iterdir()):
                if img_path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
                    continue
                mask_path = find_image(a.masks, img_path.stem)
                if mask_path is None:
                    raise PreprocessError(f"{img_path}: no mask in {a.masks}")
                stems += cut_random_crops(load_image(img_path), load_mask(mask_path), a.out,
                                          img_path.stem, a.n, a.size, rng)
            if not stems:
                raise PreprocessError(f"{a.images}: no images found")
        _append_list(a.out, a.list, stems)
    except (PreprocessError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(stems)} images to {a.out} (list {a.list})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
