"""Raster metadata, window reads and GeoTIFF writes through rasterio (GDAL).

Nothing here loads a whole raster unless asked to: ``read_window`` reads one window, and
``geotiff_writer`` lets a caller write a large output window by window.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from shared.atomic import atomic_path


class RasterError(ValueError):
    """A raster file is missing, unreadable or not what the caller needs."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class RasterInfo:
    """What a raster holds, read from its header only."""

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    crs: Any  # rasterio.crs.CRS or None
    transform: Any  # affine.Affine
    driver: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """(bands, height, width)."""
        return (self.count, self.height, self.width)


def _open(path: str | os.PathLike):
    path = Path(path)
    if not path.exists():
        raise RasterError(path, "file not found")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterError(path, f"not a readable raster ({exc})") from None


def raster_info(path: str | os.PathLike) -> RasterInfo:
    """Read band count, size, dtype, nodata, CRS and transform without reading pixels."""
    with _open(path) as src:
        return RasterInfo(
            path=Path(path), width=src.width, height=src.height, count=src.count,
            dtype=src.dtypes[0], nodata=src.nodata, crs=src.crs, transform=src.transform,
            driver=src.driver,
        )


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
