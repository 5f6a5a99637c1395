"""Cut HiRISE products into grayscale chunks, strip by strip, never holding the whole image.

Input: anything GDAL/rasterio reads (HiRISE JPEG2000 ``.JP2`` RDRs, GeoTIFF, PDS3 ``.IMG``/
``.LBL``, ISIS ``.cub``, PNG). For each image the chunk grid (``--size``, the paper's 1024 px) is
laid from the top-left corner; chunks reaching past the right/bottom edge are padded with no-data.

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
import shutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

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
            raise ValueError(f"chunk size must be at least 8 px, got {self.size}")
        if not 0.0 < float(self.center_fraction) <= 1.0:
            raise ValueError(f"center fraction must be in (0, 1], got {self.center_fraction}")
        if not 0.0 <= float(self.nodata_tolerance) < 1.0:
            raise ValueError(f"no-data tolerance must be in [0, 1), got {self.nodata_tolerance}")
        lo, hi = self.stretch_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"stretch percentiles must satisfy 0 <= low < high <= 100, "
                             f"got {self.stretch_percentiles}")
        if not 1 <= int(self.despeckle_level) <= 255:
            raise ValueError(f"despeckle level must be in 1..255, got {self.despeckle_level}")
        if int(self.despeckle_max_pixels) < 1:
            raise ValueError("despeckle max pixels must be >= 1")

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

def to_gray(bands: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) float32 grayscale (band 1 of 1-2 bands, luma of 3-4 bands)."""
    bands = np.asarray(bands)
    if bands.ndim == 2:
        return bands.astype(np.float32, copy=False)
    c = bands.shape[0]
    if c in (1, 2):
        return bands[0].astype(np.float32, copy=False)
    if c in (3, 4):
        b = bands[:3].astype(np.float32, copy=False)
        return 0.299 * b[0] + 0.587 * b[1] + 0.114 * b[2]
    raise ValueError(f"{c} bands: expected 1 (grey), 2 (grey + alpha), 3 or 4 (colour)")


def nodata_mask(bands: np.ndarray, nodata: float | None) -> np.ndarray:
    """(C, H, W) -> (H, W) bool: every band equals ``nodata`` (0 if None) or is not finite."""
    bands = np.asarray(bands)
    if bands.ndim == 2:
        bands = bands[None]
    value = 0 if nodata is None else nodata
    mask = bands == value
    if bands.dtype.kind == "f":
        mask |= ~np.isfinite(bands)
        if nodata is not None and not np.isfinite(nodata):
            mask = ~np.isfinite(bands)
    return mask.all(axis=0)


def to_uint8(gray: np.ndarray, invalid: np.ndarray, stretch: tuple[float, float] | None,
             ) -> np.ndarray:
    """Grayscale -> uint8 with valid pixels in 1..255 and no-data 0.

    ``stretch=None`` keeps 8-bit values (a valid 0 becomes 1); else ``(low, high)`` map
    linearly onto 1..255 with clipping.
    """
    if stretch is None:
        out = np.clip(np.rint(gray), 1, 255).astype(np.uint8)
    else:
        lo, hi = stretch
        scale = 254.0 / max(hi - lo, 1e-12)
        out = np.clip(np.rint((gray - lo) * scale + 1.0), 1, 255).astype(np.uint8)
    out[invalid] = 0
    return out


def bands_to_uint8(bands: np.ndarray, invalid: np.ndarray,
                   stretch: tuple[float, float] | None) -> np.ndarray:
    """(C, H, W) raw bands -> (H, W) uint8 chunk pixels (fast path for one 8-bit band)."""
    if stretch is None and bands.shape[0] == 1 and bands.dtype == np.uint8:
        out = np.maximum(bands[0], 1)
        out[invalid] = 0
        return out
    return to_uint8(to_gray(bands), invalid, stretch)


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

def _stretch_for(src, percentiles: tuple[float, float]) -> tuple[float, float] | None:
    """None for 8-bit data; else the percentiles of valid pixels on a decimated overview."""
    if all(dt == "uint8" for dt in src.dtypes):
        return None
    from rasterio.enums import Resampling

    factor = max(1, int(np.ceil(max(src.width, src.height) / OVERVIEW_MAX)))
    shape = (src.count, max(1, src.height // factor), max(1, src.width // factor))
    bands = src.read(out_shape=shape, resampling=Resampling.nearest)
    invalid = nodata_mask(bands, src.nodata)
    values = to_gray(bands)[~invalid]
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(values, percentiles)
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def image_name(path: str | Path) -> str:
    """The image identifier used in chunk names: the file name without its suffix(es)."""
    name = Path(path).name
    for suffix in (".lbl", ".LBL"):
        name = name.removesuffix(suffix)
    return Path(name).stem if "." in name else name


def iter_chunks(path: str | Path, spec: ChunkSpec = ChunkSpec(),
                stats: ImageStats | None = None, progress: bool = False) -> Iterator[Chunk]:
    """Yield every chunk of the grid of ``path`` (dropped ones with ``pixels=None``).

    Reads one strip of chunk rows at a time (split into column groups of at most
    ``spec.max_strip_mb`` of raw data), so memory does not grow with the image.
    Raises ``shared.RasterError`` naming the file when it is missing, unreadable or truncated.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    from shared.rasters import RasterError, read_window

    path = Path(path)
    if not path.exists():
        raise RasterError(path, "file not found")
    name = image_name(path)
    stats = stats if stats is not None else ImageStats(name, str(path))
    size, halo = int(spec.size), spec.halo
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                src = rasterio.open(path)
        except RasterioIOError as exc:
            raise RasterError(path, f"not a readable raster ({exc})") from None
        with src:
            if src.count > MAX_BANDS:
                raise RasterError(path, f"{src.count} bands: not a grayscale or colour image "
                                  f"(1 to {MAX_BANDS} bands expected)")
            stats.width, stats.height, stats.bands = src.width, src.height, src.count
            stats.dtype = src.dtypes[0]
            georef = is_georeferenced(src)
            if georef:
                stats.crs = src.crs.to_wkt() if src.crs is not None else None
                stats.transform = list(src.transform)[:6]
            try:
                stretch = _stretch_for(src, spec.stretch_percentiles)
            except RasterioIOError as exc:
                raise RasterError(path, f"truncated or corrupt data ({exc})") from None
            stats.stretch = list(stretch) if stretch else None
            n_rows = -(-src.height // size)
            n_cols = -(-src.width // size)
            # bytes per pixel: the raw bands plus the float32/bool/uint8 working copies
            per_px = src.count * np.dtype(src.dtypes[0]).itemsize + 16
            chunk_bytes = (size + 2 * halo) * (size + 2 * halo) * per_px
            cols_per_read = max(1, int(spec.max_strip_mb * 2**20 // chunk_bytes))
            fill = src.nodata if src.nodata is not None else 0
            c0 = int(size * (1 - spec.center_fraction) / 2)
            c1 = size - c0
            rows = range(n_rows)
            if progress:
                from tqdm import tqdm

                rows = tqdm(rows, desc=f"chunk {name}", unit="row", leave=False)
            for gr in rows:
                y = gr * size
                for g0 in range(0, n_cols, cols_per_read):
                    g1 = min(n_cols, g0 + cols_per_read)
                    x = g0 * size
                    window = (x - halo, y - halo, (g1 - g0) * size + 2 * halo, size + 2 * halo)
                    raw = read_window(src, window, fill_value=fill)
                    invalid = nodata_mask(raw, src.nodata)
                    img8 = bands_to_uint8(raw, invalid, stretch)
                    del raw
                    for gc in range(g0, g1):
                        ox = (gc - g0) * size
                        inv = invalid[halo:halo + size, halo + ox:halo + ox + size]
                        share = float(inv[c0:c1, c0:c1].mean())
                        stats.chunks_total += 1
                        where = {"source": str(path), "footprint": window_footprint(
                            src.transform, gc * size, y, size) if georef else None}
                        if share > spec.nodata_tolerance:
                            stats.chunks_dropped_nodata += 1
                            yield Chunk(name, gr, gc, y, gc * size, size, None, share, **where)
                            continue
                        if halo:
                            block = img8[:, ox:ox + size + 2 * halo]
                            clean, _ = despeckle(block, spec.despeckle_level,
                                                 spec.despeckle_max_pixels)
                            stats.specks_removed += _count_core(block, clean, halo)
                            pixels = clean[halo:halo + size, halo:halo + size]
                        else:
                            pixels = img8[:, ox:ox + size]
                        stats.chunks_kept += 1
                        yield Chunk(name, gr, gc, y, gc * size, size,
                                    np.ascontiguousarray(pixels), share, **where)


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
    """Files given directly, plus image files found (non-recursively) in given folders."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(q for q in p.iterdir()
                            if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                            and not (q.suffix.lower() == ".img"
                                     and q.with_suffix(".LBL").exists()))
        else:
            found.append(p)
    return found


def chunk_images(images: Sequence[str | Path], out_dir: str | Path,
                 spec: ChunkSpec = ChunkSpec(), overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Chunk many images; failures are recorded and skipped. Writes index.csv and the report."""
    from tqdm import tqdm

    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.images import ImageReadError
    from shared.rasters import RasterError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
        "spec": {**asdict(spec), "stretch_percentiles": list(spec.stretch_percentiles)},
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
    parser = argparse.ArgumentParser(
        description="Cut HiRISE images (JP2, GeoTIFF, PDS/ISIS, PNG) into grayscale 8-bit chunks "
                    "named <image>_r<row>_c<col>.png, dropping chunks with no-data in their "
                    "centre; writes <out>/index.csv and <out>/chunk_report.json.")
    parser.add_argument("inputs", nargs="+", help="image files, or folders holding them")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from ice_patch_cnn.config import ConfigError, load_config
    from shared.runs import UserError, check_output_dir

    check_output_dir(args.out)
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
                          progress=not args.quiet)
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
