"""Cut HiRISE products into grayscale chunks, strip by strip, never holding the whole image.

Input: anything GDAL/rasterio reads (HiRISE JPEG2000 ``.JP2`` RDRs, GeoTIFF, PDS3 ``.IMG``/
``.LBL``, ISIS ``.cub``, PNG). For each image the chunk grid (``--size``, the paper's 1024 px) is
laid from the top-left corner; chunks reaching past the right/bottom edge are padded with no-data.

Reading, no-data and the stretch are ``shared.rasters.open_scene``'s (one implementation for the
whole repository); this module adds the chunk grid, the centre test and the despeckle filter.

* **Grayscale**: one band is used as is, two bands are grey + alpha (the first is used); three or
  four bands (RGB/RGBA, HiRISE colour products) become ITU-R 601 luma ``0.299 b1 + 0.587 b2 +
  0.114 b3`` (a fourth band, alpha, is ignored). More than four bands (e.g. a 64-band embedding
  raster) is not an image this classifier reads: refused with an error naming the file.
* **8 bits**: 8-bit data is kept as it is. 16-bit, 32-bit and float data get one linear stretch
  per image: the ``--stretch-percentiles`` (default 0.1 and 99.9) of the valid pixels, measured
  on a decimated overview of the whole image (at most 2048 px on its long side), map to 1 and
  255; values outside are clipped. One stretch per image (not per chunk) keeps brightness
  comparable between the chunks of an image, which matters for "bright patch" decisions.
* **No-data**: a pixel is no-data when every band equals the raster's nodata value (0 when the
  file declares none) or is not finite. Valid pixels are never written as 0, so 0 in a chunk
  always means no-data. A chunk is dropped when its central square (``--center-fraction`` of the
  side, default 0.5) holds more no-data than ``--nodata-tolerance`` (default 0: any), which
  removes the black borders of map-projected products and damaged/missing lines.
* **Despeckle** (optional, ``--despeckle``): isolated saturated pixels (value >=
  ``--despeckle-level``, 255) that form 8-connected groups of at most ``--despeckle-max-pixels``
  (4) pixels are replaced by the median of the unsaturated pixels of their 5x5 neighbourhood.
  Larger bright areas (ice patches, bright rocks) are left untouched. Each chunk is read with a
  margin so the result does not depend on where the chunk borders fall.

Output (``--out DIR``): ``DIR/<image>/<image>_r<row>_c<col>.png`` (row/col are the chunk's grid
indices; its pixel offset is ``row*size``, ``col*size``), ``DIR/<image>/image.json`` (the
image's size, bands, stretch, CRS as WKT and affine transform), ``DIR/<image>/chunks.csv``
(every kept chunk's source file, pixel window ``x``, ``y``, ``size`` and, for a georeferenced
image, its ``footprint``: the WKT polygon of the window's corners in the image's CRS; written
last: an image whose CSV exists is skipped on a re-run unless ``--overwrite``), ``DIR/index.csv``
(every chunk of every image) and ``DIR/chunk_report.json`` (counts, failed files). Unreadable or
truncated files are reported by name, skipped, and counted. Memory: one strip of chunks
(``size`` rows, at most ``--max-strip-mb`` of raw data) plus GDAL's block cache
(``GDAL_CACHEMAX``, 64 MB here), whatever the image size.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shared.errors import UserError

IMAGE_SUFFIXES = {".jp2", ".tif", ".tiff", ".png", ".img", ".lbl", ".cub", ".jpg", ".jpeg"}
INDEX_FIELDS = ["image", "file", "grid_row", "grid_col", "y", "x", "size", "source", "footprint"]
GDAL_CACHE_MB = 64
OVERVIEW_MAX = 2048
MAX_BANDS = 4


@dataclass(frozen=True)
class ChunkSpec:
    """How images are cut (defaults: the paper's 1024 px chunks)."""

    size: int = 1024
    center_fraction: float = 0.5
    nodata_tolerance: float = 0.0
    stretch_percentiles: tuple[float, float] = (0.1, 99.9)
    despeckle: bool = False
    despeckle_level: int = 255
    despeckle_max_pixels: int = 4
    max_strip_mb: float = 128.0

    def __post_init__(self):
        if int(self.size) < 8:
            raise UserError(f"chunk size must be at least 8 px, got {self.size}")
        if not 0.0 < float(self.center_fraction) <= 1.0:
            raise UserError(f"center fraction must be in (0, 1], got {self.center_fraction}")
        if not 0.0 <= float(self.nodata_tolerance) < 1.0:
            raise UserError(f"no-data tolerance must be in [0, 1), got {self.nodata_tolerance}")
        lo, hi = self.stretch_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise UserError(f"stretch percentiles must satisfy 0 <= low < high <= 100, "
                            f"got {self.stretch_percentiles}")
        if not 1 <= int(self.despeckle_level) <= 255:
            raise UserError(f"despeckle level must be in 1..255, got {self.despeckle_level}")
        if int(self.despeckle_max_pixels) < 1:
            raise UserError("despeckle max pixels must be >= 1")

    @property
    def halo(self) -> int:
        """Margin read around each chunk for the despeckle filter."""
        return int(self.despeckle_max_pixels) + 2 if self.despeckle else 0

    @classmethod
    def from_config(cls, cfg: dict, **overrides) -> ChunkSpec:
        d = cfg["data"]
        values = dict(
            size=int(d.get("chunk_size", 1024)),
            center_fraction=float(d.get("center_fraction", 0.5)),
            nodata_tolerance=float(d.get("nodata_tolerance", 0.0)),
            stretch_percentiles=tuple(float(v) for v in d.get("stretch_percentiles",
                                                               (0.1, 99.9))),
            despeckle=bool(d.get("despeckle", False)),
            despeckle_level=int(d.get("despeckle_level", 255)),
            despeckle_max_pixels=int(d.get("despeckle_max_pixels", 4)),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class Chunk:
    """One chunk of one image: grid indices, pixel window (``x``, ``y``, ``size``), 8-bit pixels
    (None when dropped), its source file and, for a georeferenced image, its map footprint
    (the closed ring of the window's four corners in the image's CRS)."""

    image: str
    grid_row: int
    grid_col: int
    y: int
    x: int
    size: int
    pixels: np.ndarray | None
    nodata_share: float
    source: str = ""
    footprint: tuple[tuple[float, float], ...] | None = None

    @property
    def name(self) -> str:
        return f"{self.image}_r{self.grid_row}_c{self.grid_col}"

    @property
    def footprint_wkt(self) -> str:
        """The footprint as a WKT polygon ("" when the image is not georeferenced)."""
        return footprint_wkt(self.footprint)


def window_footprint(transform, x: int, y: int, size: int) -> tuple[tuple[float, float], ...]:
    """Map coordinates of the pixel window's corners (outer pixel edges), as a closed ring:
    top-left, top-right, bottom-right, bottom-left, top-left."""
    corners = ((x, y), (x + size, y), (x + size, y + size), (x, y + size), (x, y))
    return tuple(tuple(float(v) for v in transform * c) for c in corners)


def footprint_wkt(ring) -> str:
    if not ring:
        return ""
    return "POLYGON ((" + ", ".join(f"{a!r} {b!r}" for a, b in ring) + "))"


def is_georeferenced(src) -> bool:
    """A CRS, or a transform that is not the identity (rasterio's value for plain images)."""
    return src.crs is not None or not src.transform.is_identity


@dataclass
class ImageStats:
    image: str
    source: str
    width: int = 0
    height: int = 0
    bands: int = 0
    dtype: str = ""
    chunks_total: int = 0
    chunks_kept: int = 0
    chunks_dropped_nodata: int = 0
    specks_removed: int = 0
    stretch: list[float] | None = None
    crs: str | None = None
    transform: list[float] | None = None
    status: str = "ok"
    error: str = ""
    files: list[str] = field(default_factory=list, repr=False)


# --------------------------------------------------------------------------- pixel operations

def despeckle(img: np.ndarray, level: int = 255, max_pixels: int = 4,
              ignore_border: bool = True) -> tuple[np.ndarray, int]:
    """Replace isolated saturated pixels (groups of <= ``max_pixels`` at >= ``level``).

    Returns the cleaned copy and the number of pixels replaced. Groups touching the array
    border are kept when ``ignore_border`` (they may be part of a larger area outside it).
    """
    from scipy import ndimage

    img = np.asarray(img)
    sat = img >= level
    if not sat.any():
        return img.copy(), 0
    labels, n = ndimage.label(sat, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    small = sizes <= max_pixels
    small[0] = False
    if ignore_border:
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        small[border] = False
    speck = small[labels]
    if not speck.any():
        return img.copy(), 0
    out = img.copy()
    ys, xs = np.nonzero(speck)
    h, w = img.shape
    for y, x in zip(ys, xs):
        y0, y1, x0, x1 = max(0, y - 2), min(h, y + 3), max(0, x - 2), min(w, x + 3)
        patch = img[y0:y1, x0:x1]
        keep = patch[(~sat[y0:y1, x0:x1]) & (patch > 0)]
        out[y, x] = np.median(keep).astype(img.dtype) if keep.size else 0
    return out, int(ys.size)


# --------------------------------------------------------------------------- reading an image

def image_name(path: str | Path) -> str:
    """The image identifier used in chunk names: the file name without its suffix(es)."""
    name = Path(path).name
    for suffix in (".lbl", ".LBL"):
        name = name.removesuffix(suffix)
    return Path(name).stem if "." in name else name


def iter_chunks(path: str | Path, spec: ChunkSpec = ChunkSpec(),
                stats: ImageStats | None = None, progress: bool = False) -> Iterator[Chunk]:
    """Yield every chunk of the grid of ``path`` (dropped ones with ``pixels=None``).

    The image is read through ``shared.rasters.open_scene`` (no-data 0 when the file declares
    none, NaN/inf and a zero alpha are no-data too, one percentile stretch per image on a
    decimated overview), one strip of chunk rows at a time (split into column groups of at
    most ``spec.max_strip_mb`` of raw data), so memory does not grow with the image.
    Raises ``shared.RasterError`` naming the file when it is missing, unreadable, truncated or
    has more than four bands.
    """
    import rasterio

    from shared.rasters import open_scene

    path = Path(path)
    name = image_name(path)
    stats = stats if stats is not None else ImageStats(name, str(path))
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), open_scene(
            path, spec.stretch_percentiles, OVERVIEW_MAX, default_nodata=0) as scene:
        _describe(scene, stats)
        rows = grid_rows(scene.height, scene.width, int(spec.size))
        if progress:
            from tqdm import tqdm

            rows = tqdm(rows, desc=f"chunk {name}", unit="row", leave=False)
        for y, cols in rows:
            yield from _strip(scene, y, cols, spec, stats, name, path)


def grid_rows(height: int, width: int, size: int) -> list[tuple[int, list[int]]]:
    """The chunk grid, ``[(row offset, [column offsets]), ...]``: the windows of
    ``shared.tiles.iter_windows`` (the one planner; ``edge="pad"``: chunks keep the regular
    grid and the last ones reach past the edge, no overlap, no blending)."""
    from shared.tiles import iter_windows

    rows: dict[int, list[int]] = {}
    for win in iter_windows(height, width, size, edge="pad"):
        rows.setdefault(win.row, []).append(win.col)
    return list(rows.items())


def _describe(scene, stats: ImageStats) -> None:
    """Check the band count and record size, type, stretch and georeferencing in ``stats``."""
    from shared.rasters import RasterError

    if scene.count > MAX_BANDS:
        raise RasterError(scene.path, f"{scene.count} bands: not a grayscale or colour image "
                                      f"(1 to {MAX_BANDS} bands expected)")
    stats.width, stats.height, stats.bands = scene.width, scene.height, scene.count
    stats.dtype = scene.dtype
    stretch = scene.stretch
    stats.stretch = list(stretch) if stretch else None
    if is_georeferenced(scene):
        stats.crs = scene.crs.to_wkt() if scene.crs is not None else None
        stats.transform = list(scene.transform)[:6]


def _strip(scene, y: int, cols: list[int], spec: ChunkSpec, stats: ImageStats, name: str,
           path: Path) -> Iterator[Chunk]:
    """The chunks of the grid row at ``y`` (chunk columns at ``cols``, :func:`grid_rows`),
    read in column groups with the despeckle margin."""
    size, halo = int(spec.size), spec.halo
    # bytes per pixel: the raw bands plus the float32/bool/uint8 working copies
    per_px = scene.count * np.dtype(scene.dtype).itemsize + 16
    cols_per_read = max(1, int(spec.max_strip_mb * 2**20 // ((size + 2 * halo) ** 2 * per_px)))
    c0 = int(size * (1 - spec.center_fraction) / 2)
    georef = is_georeferenced(scene)
    gr = y // size
    for g0 in range(0, len(cols), cols_per_read):
        group = cols[g0:g0 + cols_per_read]
        img8, valid = scene.read_uint8(y - halo, group[0] - halo, size + 2 * halo,
                                       len(group) * size + 2 * halo, gray=True)
        img8, invalid = img8[0], ~valid
        for x in group:
            gc, ox = x // size, x - group[0]
            inv = invalid[halo:halo + size, halo + ox:halo + ox + size]
            share = float(inv[c0:size - c0, c0:size - c0].mean())
            stats.chunks_total += 1
            where = {"source": str(path), "footprint": window_footprint(
                scene.transform, gc * size, y, size) if georef else None}
            if share > spec.nodata_tolerance:
                stats.chunks_dropped_nodata += 1
                yield Chunk(name, gr, gc, y, gc * size, size, None, share, **where)
                continue
            if halo:
                block = img8[:, ox:ox + size + 2 * halo]
                clean, _ = despeckle(block, spec.despeckle_level, spec.despeckle_max_pixels)
                stats.specks_removed += _count_core(block, clean, halo)
                pixels = clean[halo:halo + size, halo:halo + size]
            else:
                pixels = img8[:, ox:ox + size]
            stats.chunks_kept += 1
            yield Chunk(name, gr, gc, y, gc * size, size, np.ascontiguousarray(pixels), share,
                        **where)


def _count_core(before: np.ndarray, after: np.ndarray, halo: int) -> int:
    core = (slice(halo, before.shape[0] - halo), slice(halo, before.shape[1] - halo))
    return int((before[core] != after[core]).sum())


# --------------------------------------------------------------------------- writing chunks

def _png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def chunk_image(path: str | Path, out_dir: str | Path, spec: ChunkSpec = ChunkSpec(),
                overwrite: bool = False, progress: bool = False) -> ImageStats:
    """Write the kept chunks of one image under ``out_dir/<image>/``, its ``image.json`` (size,
    bands, stretch, CRS and transform) and last its ``chunks.csv``."""
    from shared.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

    path = Path(path)
    name = image_name(path)
    folder = Path(out_dir) / name
    stats = ImageStats(name, str(path))
    done = folder / "chunks.csv"
    if done.exists() and not overwrite:
        stats.status = "skipped"
        return stats
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rows = []
    try:
        for chunk in iter_chunks(path, spec, stats, progress=progress):
            if chunk.pixels is None:
                continue
            fname = f"{chunk.name}.png"
            atomic_write_bytes(folder / fname, _png_bytes(chunk.pixels))
            rows.append({"image": name, "file": f"{name}/{fname}", "grid_row": chunk.grid_row,
                         "grid_col": chunk.grid_col, "y": chunk.y, "x": chunk.x,
                         "size": chunk.size, "source": str(path),
                         "footprint": chunk.footprint_wkt})
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    atomic_write_json(folder / "image.json",
                      {k: v for k, v in asdict(stats).items() if k != "files"})
    atomic_write_text(done, _csv_text(rows))
    return stats


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files given directly, plus image files found (non-recursively) in given folders.

    In a folder, one file per product: a raw PDS3 ``.IMG`` is read through its detached
    ``.LBL``, while a HiRISE ``.JP2`` is read itself (it takes the georeferencing of its
    ``.LBL`` when it has none), so the label beside it is not listed again.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            found.append(p)
            continue
        files = sorted(q for q in p.iterdir()
                       if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        stems = {(q.stem.lower(), q.suffix.lower()) for q in files}
        found += [q for q in files
                  if not (q.suffix.lower() == ".img" and (q.stem.lower(), ".lbl") in stems)
                  and not (q.suffix.lower() == ".lbl" and (q.stem.lower(), ".jp2") in stems)]
    return found


def chunk_images(images: Sequence[str | Path], out_dir: str | Path,
                 spec: ChunkSpec = ChunkSpec(), overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Chunk many images; failures are recorded and skipped. Writes index.csv and the report."""
    from tqdm import tqdm

    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.errors import UserError
    from shared.images import ImageReadError
    from shared.rasters import RasterError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_record = {**asdict(spec), "stretch_percentiles": list(spec.stretch_percentiles)}
    previous = out_dir / "chunk_report.json"
    if previous.is_file() and not overwrite:
        try:
            old_spec = json.loads(previous.read_text(encoding="utf-8")).get("spec")
        except (json.JSONDecodeError, OSError, AttributeError):
            old_spec = None
        if old_spec != json.loads(json.dumps(spec_record)):
            changed = sorted(k for k in spec_record
                             if not isinstance(old_spec, dict) or old_spec.get(k) != spec_record[k])
            raise UserError(f"{out_dir}: already chunked with other settings "
                            f"({', '.join(changed) or 'unreadable report'}); pass --overwrite "
                            "or choose another output folder")
    per_image, failed = [], []
    for path in tqdm(list(images), desc="images", unit="img", disable=not progress):
        try:
            stats = chunk_image(path, out_dir, spec, overwrite=overwrite)
        except (RasterError, ImageReadError, OSError, ValueError) as exc:
            msg = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            print(f"warning: skipped {msg}", file=sys.stderr)
            failed.append({"file": str(path), "error": msg})
            continue
        per_image.append(stats)
    index_rows: list[dict] = []
    for folder in sorted(p for p in out_dir.iterdir() if (p / "chunks.csv").is_file()):
        with open(folder / "chunks.csv", newline="", encoding="utf-8") as fh:
            index_rows += list(csv.DictReader(fh))
    atomic_write_text(out_dir / "index.csv", _csv_text(index_rows))
    report = {
        "spec": spec_record,
        "images_given": len(list(images)),
        "images_chunked": sum(s.status == "ok" for s in per_image),
        "images_skipped_done": sum(s.status == "skipped" for s in per_image),
        "images_failed": len(failed),
        "failed": failed,
        "chunks_kept": sum(s.chunks_kept for s in per_image),
        "chunks_dropped_nodata": sum(s.chunks_dropped_nodata for s in per_image),
        "chunks_in_index": len(index_rows),
        "images": [{k: v for k, v in asdict(s).items() if k != "files"} for s in per_image],
    }
    atomic_write_json(out_dir / "chunk_report.json", report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import add_progress_argument, finish_parser, progress_enabled

    parser = argparse.ArgumentParser(
        prog="ice-chunk",
        description="Cut HiRISE images (JP2, GeoTIFF, PDS/ISIS, PNG) into grayscale 8-bit chunks "
                    "named <image>_r<row>_c<col>.png, dropping chunks with no-data in their "
                    "centre; writes <out>/index.csv and <out>/chunk_report.json.")
    parser.add_argument("inputs", nargs="+", help="image files, or folders holding them")
    parser.add_argument("--out", required=True, type=Path, help="output folder (required)")
    parser.add_argument("--config", default="paper",
                        help="profile giving the defaults (paper, quick or a YAML path)")
    parser.add_argument("--size", type=int, help="chunk side in pixels (paper: 1024)")
    parser.add_argument("--center-fraction", type=float,
                        help="side of the central square checked for no-data, as a fraction")
    parser.add_argument("--nodata-tolerance", type=float,
                        help="share of no-data pixels tolerated in the central square")
    parser.add_argument("--stretch-percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="percentiles mapped to 1 and 255 for 16-bit/float data")
    parser.add_argument("--despeckle", action=argparse.BooleanOptionalAction, default=None,
                        help="remove isolated saturated pixels before chunking")
    parser.add_argument("--despeckle-level", type=int, help="saturation level (8-bit)")
    parser.add_argument("--despeckle-max-pixels", type=int,
                        help="largest saturated group still counted as a speck")
    parser.add_argument("--max-strip-mb", type=float, help="raw data read at once (MB)")
    parser.add_argument("--overwrite", action="store_true",
                        help="re-chunk images whose chunks.csv already exists")
    add_progress_argument(parser, aliases=("--quiet",))
    args = finish_parser(parser).parse_args(argv)

    from ice_patch_cnn.config import ConfigError, load_config
    from shared.errors import UserError
    from shared.runs import check_output_dir

    check_output_dir(args.out)
    from shared.runs import check_paths

    # issue 27: chunks written inside an input folder would be chunked again next time
    check_paths([args.out], args.inputs, containing=False)
    try:
        cfg = load_config(args.config)
        spec = ChunkSpec.from_config(
            cfg, size=args.size, center_fraction=args.center_fraction,
            nodata_tolerance=args.nodata_tolerance,
            stretch_percentiles=tuple(args.stretch_percentiles)
            if args.stretch_percentiles else None,
            despeckle=args.despeckle, despeckle_level=args.despeckle_level,
            despeckle_max_pixels=args.despeckle_max_pixels, max_strip_mb=args.max_strip_mb)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    images = find_images(args.inputs)
    if not images:
        parser.error(f"no image files found in {', '.join(args.inputs)}")
    report = chunk_images(images, args.out, spec, overwrite=args.overwrite,
                          progress=progress_enabled(args.no_progress))
    print(f"{report['images_chunked']} image(s) chunked, {report['images_skipped_done']} already "
          f"done, {report['images_failed']} failed; {report['chunks_kept']} chunks kept, "
          f"{report['chunks_dropped_nodata']} dropped (no-data); index: {args.out / 'index.csv'}")
    if report["images_failed"] and not (report["images_chunked"]
                                        or report["images_skipped_done"]):
        raise UserError(f"every input failed ({report['images_failed']}); first: "
                        f"{report['failed'][0]['error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
