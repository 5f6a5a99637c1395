"""Raster metadata, window reads and GeoTIFF writes through rasterio (GDAL).

Nothing here loads a whole raster unless asked to: ``read_window`` reads one window of an open
dataset or a path, and ``geotiff_writer`` lets a caller write a large output window by window.

``open_scene`` is the one way to read a real product (GeoTIFF/COG, HiRISE JP2 with its PDS
label, PDS3 .IMG, ISIS .cub, PNG/JPEG; 8/16-bit or float): a :class:`Scene` gives windowed
reads with a validity mask (nodata, NaN/inf, alpha, outside), one per-image percentile stretch
to 8 bits measured on a decimated overview (``read_uint8``), the pixel size in metres, the
body radius and pixel -> lon/lat from the CRS.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from shared.atomic import atomic_path
from shared.errors import UserError


class RasterError(UserError):
    """A raster file is missing, unreadable or not what the caller needs."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# Every raster format the readers take (GDAL drivers): the one suffix list of the project.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".cub", ".lbl", ".vrt")
# Band counts an RGB or greyscale model takes: grey, grey + alpha, RGB, RGBA.
IMAGE_BAND_COUNTS = (1, 2, 3, 4)


def check_bands(path: str | os.PathLike, count: int,
                accepted: tuple[int, ...] = IMAGE_BAND_COUNTS, model: str = "this model"
                ) -> None:
    """A raster's band count is one that the model takes, else one line naming both (a
    64-band embedding is never silently read as RGB)."""
    if int(count) not in accepted:
        takes = " or ".join(map(str, accepted))
        raise RasterError(path, f"has {count} bands, but {model} takes {takes}-band input; "
                                "pass an image with that band count or a model made for it")


def _open(path: str | os.PathLike):
    path = Path(path)
    if not path.exists():
        raise RasterError(path, "file not found")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterError(path, f"not a readable raster ({exc})") from None


def read_window(
    path_or_dataset: str | os.PathLike | Any,
    window: Window | tuple[int, int, int, int],
    bands: Sequence[int] | None = None,
    fill_value: float | None = None,
) -> np.ndarray:
    """Read one window as (bands, rows, cols).

    ``window`` is a rasterio ``Window`` or ``(col_off, row_off, width, height)``. ``bands`` are
    1-based band indexes (all bands by default). A window that reaches past the raster edge is
    read boundless and filled with ``fill_value`` (the raster's nodata, else 0), so the result
    always has the window's size. Pass an open dataset to avoid reopening the file per window.
    """
    if not isinstance(window, Window):
        window = Window(*window)
    if window.width <= 0 or window.height <= 0:
        raise ValueError(f"window must have a positive size, got {window}")
    if isinstance(path_or_dataset, (str, os.PathLike)):
        ctx: Any = _open(path_or_dataset)
    else:
        ctx = contextlib.nullcontext(path_or_dataset)
    with ctx as src:
        indexes = list(bands) if bands is not None else list(range(1, src.count + 1))
        bad = [b for b in indexes if not 1 <= b <= src.count]
        if bad:
            raise RasterError(src.name, f"band(s) {bad} out of range 1..{src.count}")
        inside = (window.col_off >= 0 and window.row_off >= 0
                  and window.col_off + window.width <= src.width
                  and window.row_off + window.height <= src.height)
        fill = fill_value if fill_value is not None else (src.nodata if src.nodata is not None
                                                         else 0)
        try:
            if inside:
                return src.read(indexes, window=window)
            return src.read(indexes, window=window, boundless=True, fill_value=fill)
        except RasterioIOError as exc:
            raise RasterError(src.name, f"truncated or corrupt data in window {window} ({exc})") \
                from None


@contextlib.contextmanager
def geotiff_writer(
    path: str | os.PathLike,
    *,
    width: int,
    height: int,
    count: int,
    dtype: str | np.dtype,
    crs: Any = None,
    transform: Any = None,
    nodata: float | None = None,
    tiled: bool = True,
    compress: str = "deflate",
    blocksize: int = 256,
    **extra: Any,
) -> Iterator[Any]:
    """Open a GeoTIFF for writing window by window; it appears at ``path`` only when complete.

    Yields an open rasterio dataset (``dst.write(arr, window=...)``). Tiled and compressed by
    default (BIGTIFF when needed), with the given CRS and transform.
    """
    profile = dict(
        driver="GTiff", width=int(width), height=int(height), count=int(count),
        dtype=np.dtype(dtype).name, crs=crs, transform=transform, nodata=nodata,
        compress=compress, BIGTIFF="IF_SAFER",
    )
    if tiled and width >= blocksize and height >= blocksize:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    profile.update(extra)
    with atomic_path(path, suffix=".tif") as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            yield dst


def write_geotiff(
    path: str | os.PathLike,
    array: np.ndarray,
    crs: Any = None,
    transform: Any = None,
    nodata: float | None = None,
    colormap: dict[int, tuple[int, ...]] | None = None,
    band_descriptions: Sequence[str] | None = None,
    **kwargs: Any,
) -> Path:
    """Write a (H, W) or (bands, H, W) array as a GeoTIFF that keeps ``crs`` and ``transform``.

    The file is written atomically. ``colormap`` (single-band uint8 only) embeds a colour table.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected a (H, W) or (bands, H, W) array, got shape {array.shape}")
    count, height, width = array.shape
    with geotiff_writer(path, width=width, height=height, count=count, dtype=array.dtype,
                        crs=crs, transform=transform, nodata=nodata, **kwargs) as dst:
        dst.write(array)
        if colormap is not None:
            dst.write_colormap(1, colormap)
        if band_descriptions is not None:
            for i, desc in enumerate(band_descriptions, start=1):
                dst.set_band_description(i, desc)
    return Path(path)


# --------------------------------------------------------------------------- scenes
#
# One way for every subproject to read a real product (GeoTIFF/COG, HiRISE JP2 with its PDS
# label, PDS3 .IMG, ISIS .cub, PNG/JPEG): windowed reads with a validity mask, and one
# per-image percentile stretch to 8 bits measured on a decimated overview.

DEFAULT_PERCENTILES = (0.1, 99.9)
OVERVIEW_MAX = 2048


def to_gray(bands: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) float32 grayscale.

    One band, or two (grey + alpha), give band 1 as is; three or four bands (RGB/RGBA) become
    ITU-R 601 luma ``0.299 b1 + 0.587 b2 + 0.114 b3`` (a fourth band, alpha, is ignored); any
    other band count becomes the band mean.
    """
    bands = np.asarray(bands)
    if bands.ndim == 2:
        return bands.astype(np.float32, copy=False)
    c = bands.shape[0]
    if c in (1, 2):
        return bands[0].astype(np.float32, copy=False)
    if c in (3, 4):
        b = bands[:3].astype(np.float32, copy=False)
        return 0.299 * b[0] + 0.587 * b[1] + 0.114 * b[2]
    return bands.astype(np.float32).mean(axis=0)


def nodata_mask(bands: np.ndarray, nodata: float | None, any_band: bool = False) -> np.ndarray:
    """(C, H, W) -> (H, W) bool, True where the pixel is no-data.

    A pixel is no-data when every band equals ``nodata`` (any band, with ``any_band``; no value
    check when ``nodata`` is None; a NaN ``nodata`` means "not finite"), or when any band is NaN
    or infinite.
    """
    bands = np.asarray(bands)
    if bands.ndim == 2:
        bands = bands[None]
    reduce = np.any if any_band else np.all
    if bands.dtype.kind == "f":
        finite = np.isfinite(bands)
        if nodata is None or not np.isfinite(nodata):
            return ~finite.all(axis=0)
        return reduce(bands == nodata, axis=0) | ~finite.all(axis=0)
    if nodata is None:
        return np.zeros(bands.shape[1:], dtype=bool)
    return reduce(bands == nodata, axis=0)


def to_uint8(gray: np.ndarray, invalid: np.ndarray | None,
             stretch: tuple[float, float] | None) -> np.ndarray:
    """Values -> uint8 with valid pixels in 1..255 and invalid pixels 0.

    ``stretch=None`` keeps 8-bit values (a valid 0 becomes 1, so 0 always means invalid);
    else ``(low, high)`` map linearly onto 1..255, values outside are clipped.
    """
    with np.errstate(invalid="ignore"):
        if stretch is None:
            out = np.clip(np.rint(gray), 1, 255).astype(np.uint8)
        else:
            lo, hi = stretch
            scale = 254.0 / max(hi - lo, 1e-12)
            out = np.clip(np.rint((gray - lo) * scale + 1.0), 1, 255).astype(np.uint8)
    if invalid is not None:
        out[invalid] = 0
    return out


def body_radius_m(crs: Any) -> float | None:
    """Semi-major axis in metres of the body (ellipsoid) of ``crs``, or None if unknown.

    Works for any CRS GDAL knows, including the IAU planetary ones (``IAU_2015:30100`` ->
    1737400.0, the Moon; ``IAU_2015:49900`` -> 3396190.0, Mars).
    """
    import re

    if crs is None:
        return None
    crs = _as_crs(crs)
    if crs is None:
        return None
    for fmt in ("WKT1_GDAL", "WKT2_2019"):
        try:
            wkt = crs.to_wkt(version=fmt)
        except Exception:  # noqa: BLE001 - some CRSs have no WKT1 form
            continue
        m = re.search(r'(?:SPHEROID|ELLIPSOID)\["[^"]*",\s*([0-9.eE+-]+)', wkt)
        if m:
            value = float(m.group(1))
            unit = re.search(r'(?:SPHEROID|ELLIPSOID)\["[^"]*",[^\]]*?LENGTHUNIT\["[^"]*",'
                             r'\s*([0-9.eE+-]+)', wkt)
            return value * float(unit.group(1)) if unit else value
    params = crs.to_dict()
    for key in ("a", "R"):
        if key in params:
            return float(params[key])
    return None


def _as_crs(crs: Any):
    from rasterio.crs import CRS

    if crs is None or isinstance(crs, CRS):
        return crs
    try:
        return CRS.from_user_input(crs)
    except Exception:  # noqa: BLE001 - rasterio raises CRSError and others
        return None


def geographic_crs(crs: Any):
    """The geographic (lon/lat degrees) CRS of the body of ``crs`` (itself when geographic)."""
    from rasterio.crs import CRS

    crs = _as_crs(crs)
    if crs is None:
        return None
    if crs.is_geographic:
        return crs
    wkt = crs.to_wkt(version="WKT1_GDAL")
    start = wkt.find("GEOGCS[")
    if start < 0:
        return None
    depth = 0
    for i in range(start + len("GEOGCS"), len(wkt)):
        if wkt[i] == "[":
            depth += 1
        elif wkt[i] == "]":
            depth -= 1
            if depth == 0:
                return CRS.from_wkt(wkt[start:i + 1])
    return None


_NOT_RASTERS = {".lbl", ".txt", ".cat", ".fmt", ".htm", ".html", ".pdf", ".xml", ".tab"}


def _label_target(path: Path) -> Path | None:
    """For a detached PDS label (.LBL), the data file it describes when GDAL cannot open it."""
    import re

    try:
        text = path.read_text(errors="replace")[:200_000]
    except OSError:
        return None
    names = re.findall(r'(?:\^\w+|FILE_NAME)\s*=\s*\(?\s*"([^"]+)"', text)
    for name in names:
        cand = path.parent / name
        for variant in (cand, cand.with_name(cand.name.upper()), cand.with_name(cand.name.lower())):
            if variant.exists() and variant.suffix.lower() not in _NOT_RASTERS:
                return variant
    for suffix in (".JP2", ".jp2", ".IMG", ".img"):
        cand = path.with_suffix(suffix)
        if cand.exists():
            return cand
    return None


def _borrow_from_pair(scene: Scene, path: Path) -> None:
    """A HiRISE JP2 and its detached label: what the file opened lacks (georeferencing, a
    declared no-data value) is taken from the other one (same size only)."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    if path.suffix.lower() == ".lbl":
        other = _label_target(path)
    elif path.suffix.lower() == ".jp2":
        other = next((c for c in (path.with_suffix(".LBL"), path.with_suffix(".lbl"))
                      if c.exists()), None)
    else:
        return
    if other is None or other.resolve() == scene.source.resolve():
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(other) as src:
                if (src.height, src.width) != (scene.height, scene.width):
                    return
                if (not scene.georeferenced and src.crs is not None
                        and not src.transform.is_identity):
                    scene.crs, scene.transform = src.crs, src.transform
                    scene.res = (float(src.res[0]), float(src.res[1]))
                    scene.georeferenced = True
                if scene.file_nodata is None and src.nodata is not None:
                    scene.nodata = scene.file_nodata = src.nodata
                    scene.fill = src.nodata if np.isfinite(src.nodata) else 0
    except RasterioIOError:
        return


class Scene:
    """An open raster read window by window; use :func:`open_scene` (a context manager).

    Attributes: ``path``, ``height``, ``width``, ``count``, ``dtype`` (of band 1), ``dtypes``,
    ``crs``, ``transform``, ``nodata`` (the value used as no-data: the file's, else
    ``default_nodata``), ``file_nodata`` (the file's own, or None), ``alpha_band``, ``res``
    ((x, y) pixel size in CRS units), ``pixel_size_m``, ``body_radius_m``, ``georeferenced``,
    ``driver``, ``source`` (the file GDAL opened, e.g. the JP2 behind a label),
    ``percentiles``, ``overview_max``; lazily measured: ``stretch``, ``overview_shape``,
    ``overview_valid_fraction``. ``dataset`` is the rasterio dataset underneath.
    """

    def __init__(self, src: Any, path: Path, percentiles: tuple[float, float],
                 overview_max: int, stretch: Any = "auto", default_nodata: float | None = None):
        self._src = src
        self.path = Path(path)
        self.source = Path(src.name)
        self.height, self.width, self.count = int(src.height), int(src.width), int(src.count)
        self.dtypes = tuple(src.dtypes)
        self.dtype = self.dtypes[0]
        self.driver = src.driver
        self.crs = src.crs
        self.transform = src.transform
        self.file_nodata = src.nodata  # what the file declares (for outputs that copy it)
        self.nodata = src.nodata if src.nodata is not None else default_nodata
        self.res = (float(src.res[0]), float(src.res[1]))
        self.georeferenced = self.crs is not None and not self.transform.is_identity
        lo, hi = (float(v) for v in percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"stretch percentiles must satisfy 0 <= low < high <= 100, "
                             f"got {percentiles}")
        self.percentiles = (lo, hi)
        self.overview_max = max(1, int(overview_max))
        self.fill = self.nodata if self.nodata is not None and np.isfinite(self.nodata) else 0
        self._stretch = stretch
        self._overview: tuple[tuple[int, int, int], float] | None = None
        self.eight_bit = all(dt == "uint8" for dt in self.dtypes)
        try:
            from rasterio.enums import ColorInterp

            alpha = [i + 1 for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
        except Exception:  # noqa: BLE001 - drivers without colour interpretation
            alpha = []
        self.alpha_band: int | None = alpha[0] if alpha and self.count > 1 else None

    # -- metadata ------------------------------------------------------------------------
    def __repr__(self) -> str:
        crs = None
        if self.crs is not None:
            auth = self.crs.to_authority()
            crs = ":".join(auth) if auth else self.crs.to_string()[:60]
        return (f"Scene({str(self.path)!r}, {self.count}x{self.height}x{self.width} "
                f"{self.dtype}, crs={crs})")

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._src.close()

    @property
    def closed(self) -> bool:
        return self._src.closed

    @property
    def dataset(self) -> Any:
        """The underlying rasterio dataset (for what this class does not wrap)."""
        return self._src

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.count, self.height, self.width)

    @property
    def body_radius_m(self) -> float | None:
        return body_radius_m(self.crs) if self.georeferenced else None

    @property
    def pixel_size_m(self) -> float | None:
        """Metres per pixel: the mean of the x and y pixel sizes for a CRS projected in a
        linear unit; for a geographic CRS the north-south pixel size on the body
        (radius * pixel height in radians, independent of latitude); None if unknown."""
        if not self.georeferenced:
            return None
        if self.crs.is_projected:
            try:
                _, factor = self.crs.linear_units_factor
            except Exception:  # noqa: BLE001 - CRSError for unusual units
                return None
            return float((abs(self.res[0]) + abs(self.res[1])) / 2 * factor)
        radius = body_radius_m(self.crs)
        if radius is None:
            return None
        return float(np.deg2rad(abs(self.res[1])) * radius)

    def window_transform(self, row: int, col: int) -> Any:
        """The affine transform of a window whose top-left pixel is (row, col)."""
        from affine import Affine

        return self.transform @ Affine.translation(int(col), int(row))

    def xy(self, rows: Any, cols: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centre (row, col) -> map (x, y) in the scene's CRS; fractional pixels allowed."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        t = self.transform
        x = t.c + (cols + 0.5) * t.a + (rows + 0.5) * t.b
        y = t.f + (cols + 0.5) * t.d + (rows + 0.5) * t.e
        return x, y

    def window_bounds(self, row: int, col: int, height: int, width: int,
                      ) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a pixel window in the scene's CRS (its map
        footprint for an unrotated transform; pixel units for plain images)."""
        from rasterio.windows import bounds

        return tuple(float(v) for v in bounds(Window(col, row, width, height),
                                              self.transform))

    def lonlat_to_pixel(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) degrees in the body's geographic CRS -> fractional pixel (row, col),
        the inverse of :meth:`pixel_to_lonlat` (row 0.0 is the centre of the first row)."""
        if not self.georeferenced:
            raise RasterError(self.path, "not georeferenced: no CRS/transform for lon/lat")
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        shape = lon.shape
        if self.crs.is_geographic:
            x, y = lon, lat
        else:
            from rasterio.warp import transform as warp_transform

            geo = geographic_crs(self.crs)
            if geo is None:
                raise RasterError(self.path, f"no geographic CRS found for {self.crs}")
            xs, ys = warp_transform(geo, self.crs, lon.ravel().tolist(), lat.ravel().tolist())
            x, y = np.asarray(xs).reshape(shape), np.asarray(ys).reshape(shape)
        inv = ~self.transform
        cols = inv.c + x * inv.a + y * inv.b - 0.5
        rows = inv.f + x * inv.d + y * inv.e - 0.5
        return rows, cols

    def pixel_to_lonlat(self, rows: Any, cols: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centre (row, col) -> (lon, lat) degrees in the body's geographic CRS.

        Fractional pixels are allowed (row 0.0 is the centre of the first row). Raises
        RasterError when the scene is not georeferenced.
        """
        if not self.georeferenced:
            raise RasterError(self.path, "not georeferenced: no CRS/transform to give lon/lat")
        x, y = self.xy(rows, cols)
        shape = x.shape
        if self.crs.is_geographic:
            return x, y
        from rasterio.warp import transform as warp_transform

        geo = geographic_crs(self.crs)
        if geo is None:
            raise RasterError(self.path, f"no geographic CRS found for {self.crs}")
        lon, lat = warp_transform(self.crs, geo, x.ravel().tolist(), y.ravel().tolist())
        return np.asarray(lon).reshape(shape), np.asarray(lat).reshape(shape)

    # -- overview and stretch ------------------------------------------------------------
    def _read_overview(self) -> np.ndarray:
        from rasterio.enums import Resampling

        factor = max(1, int(np.ceil(max(self.width, self.height) / self.overview_max)))
        shape = (self.count, max(1, self.height // factor), max(1, self.width // factor))
        try:
            return self._src.read(out_shape=shape, resampling=Resampling.nearest)
        except RasterioIOError as exc:
            raise RasterError(self.path, f"truncated or corrupt data ({_short(exc)})") from None

    def _measure(self) -> None:
        bands = self._read_overview()
        invalid = nodata_mask(bands, self.nodata)
        if self.alpha_band is not None:
            invalid |= bands[self.alpha_band - 1] == 0
        valid_fraction = float(1.0 - invalid.mean()) if invalid.size else 0.0
        self._overview = (tuple(bands.shape), valid_fraction)
        if isinstance(self._stretch, str):
            if self.eight_bit:
                self._stretch = None
                return
            values = to_gray(bands)[~invalid]
            if values.size == 0:
                self._stretch = (0.0, 1.0)
                return
            lo, hi = np.percentile(values, self.percentiles)
            if hi <= lo:
                hi = lo + 1.0
            self._stretch = (float(lo), float(hi))

    @property
    def stretch(self) -> tuple[float, float] | None:
        """(low, high) raw values mapped to 1 and 255 by :meth:`read_uint8`; None for 8-bit.

        Measured once per scene, on first use: the ``percentiles`` of the valid pixels'
        grayscale (:func:`to_gray`) on a nearest-neighbour decimated read of the whole
        scene whose long side is at most ``overview_max`` px (GDAL uses the file's overviews
        or JP2 resolution levels when it has them).
        """
        if isinstance(self._stretch, str):
            if self.eight_bit:
                return None
            self._measure()
        return self._stretch

    @property
    def overview_shape(self) -> tuple[int, int, int]:
        """(bands, rows, cols) of the decimated read the stretch was measured on."""
        if self._overview is None:
            self._measure()
        return self._overview[0]

    @property
    def overview_valid_fraction(self) -> float:
        """Share of valid pixels in the decimated overview."""
        if self._overview is None:
            self._measure()
        return self._overview[1]

    def all_invalid(self, block: int = 1024) -> bool:
        """True when no pixel of the scene is valid.

        Cheap when the overview has valid pixels (the usual case); when it has none, the whole
        scene is scanned window by window to be sure.
        """
        if self.overview_valid_fraction > 0:
            return False
        from shared.tiles import iter_windows

        for w in iter_windows(self.height, self.width, block, edge="pad"):
            _, valid = self.read(w.row, w.col, w.valid_height, w.valid_width)
            if valid.any():
                return False
        return True

    # -- windowed reads ------------------------------------------------------------------
    def _indexes(self, bands: Sequence[int] | None) -> list[int]:
        indexes = list(range(1, self.count + 1)) if bands is None else [int(b) for b in bands]
        bad = [b for b in indexes if not 1 <= b <= self.count]
        if bad or not indexes:
            raise RasterError(self.path, f"band(s) {bad or indexes} out of range 1..{self.count}")
        return indexes

    def _read_raw(self, row: int, col: int, height: int, width: int,
                  bands: Sequence[int] | None, boundless: bool,
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """Native-dtype (bands, h, w) and a bool 'inside the raster' mask (None if all)."""
        row, col, height, width = int(row), int(col), int(height), int(width)
        if height <= 0 or width <= 0:
            raise ValueError(f"window must have a positive size, got {height}x{width}")
        indexes = self._indexes(bands)
        r0, r1 = max(row, 0), min(row + height, self.height)
        c0, c1 = max(col, 0), min(col + width, self.width)
        inside_all = r0 == row and c0 == col and r1 == row + height and c1 == col + width
        if not inside_all and not boundless:
            raise RasterError(self.path, f"window rows {row}..{row + height}, cols "
                                         f"{col}..{col + width} is outside the raster "
                                         f"({self.height}x{self.width})")
        where = f"window rows {row}..{row + height}, cols {col}..{col + width}"
        dtype = np.result_type(*[self.dtypes[i - 1] for i in indexes])
        try:
            if inside_all:
                return self._src.read(indexes, window=Window(col, row, width, height)), None
            out = np.full((len(indexes), height, width), self.fill, dtype=dtype)
            inside = np.zeros((height, width), dtype=bool)
            if r1 > r0 and c1 > c0:
                out[:, r0 - row:r1 - row, c0 - col:c1 - col] = self._src.read(
                    indexes, window=Window(c0, r0, c1 - c0, r1 - r0))
                inside[r0 - row:r1 - row, c0 - col:c1 - col] = True
            return out, inside
        except RasterioIOError as exc:
            raise RasterError(self.path, f"truncated or corrupt data in {where} "
                                         f"({_short(exc)})") from None

    def _valid(self, raw: np.ndarray, inside: np.ndarray | None,
               alpha: np.ndarray | None = None) -> np.ndarray:
        valid = ~nodata_mask(raw, self.nodata)
        if alpha is not None:
            valid &= alpha != 0
        if inside is not None:
            valid &= inside
        return valid

    def _read_checked(self, row: int, col: int, height: int, width: int,
                      bands: Sequence[int] | None, boundless: bool,
                      ) -> tuple[np.ndarray, np.ndarray]:
        raw, inside = self._read_raw(row, col, height, width, bands, boundless)
        alpha = None
        if self.alpha_band is not None:
            if bands is None or self.alpha_band in bands:
                pos = (list(range(1, self.count + 1)) if bands is None
                       else [int(b) for b in bands]).index(self.alpha_band)
                alpha = raw[pos]
            else:
                alpha = self._read_raw(row, col, height, width, [self.alpha_band],
                                       boundless)[0][0]
        return raw, self._valid(raw, inside, alpha)

    def read_raw(self, row: int, col: int, height: int, width: int,
                 bands: Sequence[int] | None = None, out: np.ndarray | None = None,
                 ) -> np.ndarray:
        """The file's own values (its dtype, no nodata test) of a window inside the raster,
        (bands, height, width), decoded into ``out`` when given (no copy: the row ring of
        :class:`shared.engine.RowRingReader`). A window reaching outside or a truncated
        file is a RasterError."""
        if out is None:
            return self._read_raw(row, col, height, width, bands, False)[0]
        if row < 0 or col < 0 or row + height > self.height or col + width > self.width:
            raise RasterError(self.path, f"window rows {row}..{row + height}, cols "
                                         f"{col}..{col + width} is outside the raster "
                                         f"({self.height}x{self.width})")
        try:
            return self._src.read(self._indexes(bands), window=Window(col, row, width, height),
                                  out=out)
        except RasterioIOError as exc:
            raise RasterError(self.path, f"truncated or corrupt data in rows {row}.."
                                         f"{row + height} ({_short(exc)})") from None

    def read(self, row: int, col: int, height: int, width: int,
             bands: Sequence[int] | None = None, boundless: bool = True,
             out_shape: tuple[int, int] | None = None, resampling: str = "bilinear",
             ) -> tuple[np.ndarray, np.ndarray]:
        """Read a window: ``(data, valid)``.

        ``data`` is float32 (bands, height, width) of raw values (``bands`` 1-based, all by
        default); ``valid`` is bool (height, width), False where every band read equals the
        nodata value, any band is NaN/inf, the alpha band (if the file has one) is 0, or the
        pixel lies outside the raster (filled with nodata, else 0). With ``boundless=False``
        a window reaching outside is a RasterError.

        ``out_shape=(rows, cols)`` resamples the window to that size with :func:`resample`
        (e.g. to the model's training scale); invalid pixels are NaN in ``data`` then. The
        window itself is read at full resolution, so its size bounds the memory.
        """
        raw, valid = self._read_checked(row, col, height, width, bands, boundless)
        if out_shape is not None:
            return resample(raw, valid, out_shape, resampling)
        return raw.astype(np.float32, copy=False), valid

    def read_uint8(self, row: int, col: int, height: int, width: int,
                   bands: Sequence[int] | None = None, gray: bool = False,
                   out_shape: tuple[int, int] | None = None, resampling: str = "bilinear",
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Read a window as 8 bits: ``(uint8 (bands or 1, h, w), valid)``.

        8-bit scenes keep their values; others get the scene's :attr:`stretch` (low -> 1,
        high -> 255, clipped). Valid pixels are always 1..255 and invalid ones 0.
        ``gray=True`` first reduces the bands to one with :func:`to_gray`. ``out_shape``
        resamples the raw values first (see :meth:`read`).
        """
        raw, valid = self._read_checked(row, col, height, width, bands, True)
        if out_shape is not None:
            raw, valid = resample(raw, valid, out_shape, resampling)
        invalid = ~valid
        stretch = self.stretch
        if stretch is None and raw.dtype == np.uint8 and (raw.shape[0] == 1 or not gray):
            out = np.maximum(raw, 1)
            out[:, invalid] = 0
            return out, valid
        if gray:
            return to_uint8(to_gray(raw), invalid, stretch)[None], valid
        out = np.empty(raw.shape, dtype=np.uint8)
        for i in range(raw.shape[0]):
            out[i] = to_uint8(raw[i].astype(np.float32, copy=False), invalid, stretch)
        return out, valid


RESAMPLING = ("nearest", "bilinear", "cubic", "average", "lanczos", "mode")


def resample(data: np.ndarray, valid: np.ndarray, out_shape: tuple[int, int],
             resampling: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """Resample a (bands, h, w) window and its validity to ``out_shape`` (rows, cols).

    Invalid pixels take no part (GDAL's warper with NaN as no-data; its kernels widen when
    downsampling, so ``bilinear`` and ``average`` do not alias); an output pixel is valid when
    some valid input pixel contributes to it. Returns float32 data and a bool mask.
    """
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    if resampling not in RESAMPLING:
        raise ValueError(f"resampling must be one of {', '.join(RESAMPLING)}, got {resampling!r}")
    oh, ow = (int(v) for v in out_shape)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"out_shape must be positive, got {out_shape}")
    data = np.asarray(data)
    squeeze = data.ndim == 2
    if squeeze:
        data = data[None]
    c, h, w = data.shape
    src = data.astype(np.float32, copy=True)
    src[:, ~np.asarray(valid, dtype=bool)] = np.nan
    dst = np.full((c, oh, ow), np.nan, dtype=np.float32)
    crs = CRS.from_epsg(3857)  # any one CRS: source and target grids differ only in scale
    reproject(src, dst, src_transform=Affine.identity(), src_crs=crs, src_nodata=np.nan,
              dst_transform=Affine.scale(w / ow, h / oh), dst_crs=crs, dst_nodata=np.nan,
              resampling=getattr(Resampling, resampling))
    out_valid = np.isfinite(dst).all(axis=0)
    dst[:, ~out_valid] = np.nan
    return (dst[0] if squeeze else dst), out_valid


def _short(exc: BaseException | None) -> str:
    """One line of GDAL's message (the cause rasterio chains, when there is one)."""
    if exc is None:
        return "unknown error"
    cause = exc.__cause__ or exc.__context__
    text = str(cause) if cause is not None and str(cause) else str(exc)
    return " ".join(text.split())[:300]


def _check_whole_image(path: Path) -> None:
    """A truncated PNG or JPEG is an error: GDAL's drivers return the missing rows as zeros
    (no-data) without raising, so a damaged file would pass as an empty scene. PNG: Pillow's
    ``verify`` reads every chunk and its CRC; JPEG: a full decode."""
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        return
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "PNG":
                im.verify()
            else:
                im.load()
    except (OSError, SyntaxError) as exc:
        raise RasterError(path, f"truncated or corrupt image ({exc})") from None


def open_scene(path: str | os.PathLike,
               percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
               overview_max: int = OVERVIEW_MAX,
               stretch: Any = "auto",
               default_nodata: float | None = None) -> Scene:
    """Open any raster GDAL reads as a :class:`Scene` (use it as a context manager).

    ``path`` may be a GeoTIFF/COG, JP2 (a HiRISE ``.JP2``; or its detached PDS ``.LBL``, which
    is opened through GDAL's PDS driver or else resolved to the data file it names), PDS3
    ``.IMG``, ISIS ``.cub``, PNG or JPEG. ``stretch``: ``"auto"`` (measured, see
    :attr:`Scene.stretch`), None (keep raw values, 8-bit only makes sense) or a fixed
    ``(low, high)``. ``default_nodata`` is the no-data value used when the file declares none
    (None: only NaN/inf are no-data; the ice chunker passes 0, HiRISE's null value).

    Missing, unreadable or truncated files raise :class:`RasterError` naming the file.
    """
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    path = Path(path)
    if not path.exists():
        raise RasterError(path, "file not found")
    if path.is_dir():
        raise RasterError(path, "is a directory, not a raster file")
    if path.stat().st_size == 0:
        raise RasterError(path, "file is empty")
    _check_whole_image(path)
    if stretch is not None and not isinstance(stretch, str):
        lo, hi = (float(v) for v in stretch)
        if not hi > lo:
            raise ValueError(f"stretch must have high > low, got {stretch}")
        stretch = (lo, hi)
    elif isinstance(stretch, str) and stretch != "auto":
        raise ValueError(f"stretch must be 'auto', None or (low, high), got {stretch!r}")
    candidates = [path]
    if path.suffix.lower() == ".lbl":
        target = _label_target(path)
        if target is not None:
            candidates.append(target)
    elif path.suffix.lower() == ".img":  # raw PDS3 data: its detached label describes it
        candidates += [c for c in (path.with_suffix(".LBL"), path.with_suffix(".lbl"))
                       if c.exists()][:1]
    error = None
    for cand in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                src = rasterio.open(cand)
        except RasterioIOError as exc:
            error = error or exc
            continue
        try:
            scene = Scene(src, path, percentiles, overview_max, stretch, default_nodata)
        except Exception:
            src.close()
            raise
        if not scene.georeferenced or src.nodata is None:
            _borrow_from_pair(scene, path)
        return scene
    raise RasterError(path, f"not a readable raster ({_short(error)})")


# --------------------------------------------------------------------------- class masks
def describe_class_band(dst: Any, names: Sequence[str] | Mapping[int, str],
                        colors: Mapping[int, Sequence[int]], *, band: int = 1,
                        description: str = "class", nodata: int | None = None) -> None:
    """What a GIS shows for a class (or binary) mask band of an open GeoTIFF being written:
    the band description, a colour table (``nodata`` transparent) and one ``CLASS_<value>``
    metadata item per class name (read back with ``src.tags(band)``). Pair it with
    :func:`write_class_sidecars` after the file is closed for GDAL category names, a raster
    attribute table and a QGIS style."""
    names = dict(enumerate(names)) if not isinstance(names, Mapping) else dict(names)
    dst.set_band_description(band, description)
    table = {int(k): tuple(int(c) for c in (*tuple(v)[:3], 255)) for k, v in colors.items()}
    if nodata is not None:
        table[int(nodata)] = (0, 0, 0, 0)
    dst.write_colormap(band, table)
    dst.update_tags(band, **{f"CLASS_{int(k)}": str(v) for k, v in names.items()})


def _qml(names: Mapping[int, str], colors: Mapping[int, Sequence[int]], band: int) -> str:
    from xml.sax.saxutils import quoteattr

    entries = "\n".join(
        f'        <paletteEntry value="{int(k)}" color="#{int(colors[k][0]):02x}'
        f'{int(colors[k][1]):02x}{int(colors[k][2]):02x}" alpha="255" '
        f'label={quoteattr(str(v))}/>' for k, v in sorted(names.items()))
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="{band}" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin><limits>None</limits><extent>WholeRaster</extent></minMaxOrigin>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" invertColors="0"/>
    <rasterresampler maxOversample="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def _aux_xml(names: Mapping[int, str], colors: Mapping[int, Sequence[int]], band: int) -> str:
    from xml.sax.saxutils import escape

    top = max(names) if names else -1
    categories = "\n".join(f"      <Category>{escape(str(names.get(i, '')))}</Category>"
                           for i in range(top + 1))
    fields = [("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8)]
    defs = "\n".join(f'      <FieldDefn index="{i}"><Name>{n}</Name><Type>{t}</Type>'
                     f'<Usage>{u}</Usage></FieldDefn>' for i, (n, t, u) in enumerate(fields))
    rows = "\n".join(
        f'      <Row index="{r}"><F>{int(k)}</F><F>{escape(str(v))}</F>'
        + "".join(f"<F>{int(c)}</F>" for c in tuple(colors[k])[:3]) + "</Row>"
        for r, (k, v) in enumerate(sorted(names.items())))
    return f"""<PAMDataset>
  <PAMRasterBand band="{band}">
    <CategoryNames>
{categories}
    </CategoryNames>
    <GDALRasterAttributeTable tableType="thematic">
{defs}
{rows}
    </GDALRasterAttributeTable>
  </PAMRasterBand>
</PAMDataset>
"""


def write_class_sidecars(path: str | os.PathLike, names: Sequence[str] | Mapping[int, str],
                         colors: Mapping[int, Sequence[int]], *, band: int = 1) -> list[Path]:
    """Beside a class GeoTIFF: ``<file>.aux.xml`` (GDAL category names and a thematic raster
    attribute table: QGIS's identify tool and ``gdalinfo`` show the class names) and
    ``<stem>.qml`` (a QGIS paletted style with the class names as labels, which QGIS loads with
    the layer). Both written atomically; returns their paths."""
    from shared.atomic import atomic_write_text

    path = Path(path)
    names = dict(enumerate(names)) if not isinstance(names, Mapping) else dict(names)
    aux = atomic_write_text(path.with_name(path.name + ".aux.xml"),
                            _aux_xml(names, colors, band))
    qml = atomic_write_text(path.with_suffix(".qml"), _qml(names, colors, band))
    return [Path(aux), Path(qml)]
