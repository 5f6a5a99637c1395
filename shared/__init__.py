"""Thin I/O helper shared by the five subprojects.

Only what at least two subprojects need lives here: reading images and masks with errors that
name the file, raster windows and metadata through rasterio, a regular grid of windows over a
raster of any size, GeoTIFF writing that keeps CRS and transform, atomic writes, seeding, YAML
config files read with errors that name the file (`shared.configs`), and the
per-paper result summary that ``make results`` assembles.

Importing this package never imports torch or tensorflow (one framework per process).
"""

from shared.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from shared.images import ImageReadError, read_image, read_mask
from shared.rasters import (
    RasterError,
    RasterInfo,
    Scene,
    open_scene,
    raster_info,
    read_window,
    write_geotiff,
)
from shared.seed import seed_everything
from shared.tiles import TileWindow, iter_windows

__all__ = [
    "ImageReadError",
    "RasterError",
    "RasterInfo",
    "Scene",
    "TileWindow",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "iter_windows",
    "open_scene",
    "raster_info",
    "read_image",
    "read_mask",
    "read_window",
    "seed_everything",
    "write_geotiff",
]
