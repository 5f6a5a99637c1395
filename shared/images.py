"""Read images and masks (PNG, JPEG, PGM, TIFF) into numpy with errors that name the file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from shared.errors import UserError

_MODES = {None, "L", "RGB", "I;16", "F"}


class ImageReadError(UserError):
    """An image or mask file is missing, truncated, not an image or has unexpected content."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def read_image(path: str | os.PathLike, mode: str | None = None) -> np.ndarray:
    """Read an image file into a numpy array.

    ``mode`` converts on the way in: ``"RGB"`` gives (H, W, 3) uint8 (grayscale is repeated),
    ``"L"`` gives (H, W) uint8 (colour is converted with ITU-R 601 luma), ``None`` keeps what
    the file holds ((H, W) or (H, W, C), uint8 or uint16). Multi-band or floating-point TIFFs
    that Pillow cannot hold are read with rasterio and returned as (H, W, C).

    Any bit depth: with ``mode`` "RGB" or "L", a 16- or 32-bit integer or a floating-point
    image is brought to 8 bits by one per-image percentile stretch (``stretch_to_uint8``:
    never clipped to white, a float image in [0, 1] never becomes black), NaN and infinite
    pixels are invalid (0), and an image without a single valid pixel is an error. The band
    count is checked against what ``mode`` takes: "RGB" and "L" accept 1 (grey), 2 (grey +
    alpha), 3 (RGB) or 4 (RGBA) bands, and a 64-band raster is an error naming the file and
    both counts, never silently taken as RGB.

    Raises :class:`ImageReadError` naming the file when it is missing, empty, truncated, not
    an image, or larger than Pillow's decompression-bomb limit (``2 * Image.MAX_IMAGE_PIXELS``,
    about 179 Mpx; such scenes are read window by window with ``shared.rasters.open_scene``).
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(m for m in _MODES if m)} or None")
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty")
    try:
        with _open_whole(path) as img:
            img.load()  # forces a full decode: truncated files fail here
            if mode in ("RGB", "L") and img.mode not in _EIGHT_BIT:
                arr = _as_mode(path, _pillow_array(img), mode)
            else:
                if mode is not None and img.mode != mode:
                    img = img.convert(mode)
                arr = np.asarray(img)
    except UnidentifiedImageError:
        if path.suffix.lower() in {".tif", ".tiff"}:
            return _read_tiff_with_rasterio(path, mode)
        raise ImageReadError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageReadError):
            raise
        if path.suffix.lower() in {".tif", ".tiff"}:
            return _read_tiff_with_rasterio(path, mode)
        raise ImageReadError(path, f"truncated or corrupt image ({exc})") from None
    return np.ascontiguousarray(arr)


# Pillow modes whose values are already 8-bit per band (converted by Pillow itself)
_EIGHT_BIT = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
STRETCH_PERCENTILES = (0.1, 99.9)


def _pillow_array(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    if img.mode.startswith("I;16") and arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def stretch_to_uint8(arr: np.ndarray, path: str | os.PathLike = "<array>",
                     percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> np.ndarray:
    """Any-depth image -> uint8 by one stretch over all its bands.

    uint8 is returned unchanged; other integer and float images map the ``percentiles`` of
    their finite values linearly onto 0..255 (clipped outside), so a 16-bit scene keeps its
    contrast and a float image in [0, 1] is not rounded to black. NaN and infinite pixels
    become 0; an image with no finite pixel at all is an ``ImageReadError``.
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    data = arr.astype(np.float64, copy=False)
    finite = np.isfinite(data)
    if not finite.any():
        raise ImageReadError(path, "has no valid pixel (every value is NaN or infinite)")
    lo, hi = np.percentile(data[finite], percentiles)
    if hi <= lo:
        hi = lo + 1.0
    with np.errstate(invalid="ignore"):
        out = np.clip(np.rint((data - lo) * (255.0 / (hi - lo))), 0, 255)
    out[~finite] = 0
    return out.astype(np.uint8)


def _as_mode(path: Path, arr: np.ndarray, mode: str | None) -> np.ndarray:
    """(H, W) or (H, W, C) of any depth -> what ``mode`` promises, with the band count checked."""
    if mode not in ("RGB", "L"):
        return arr
    bands = 1 if arr.ndim == 2 else arr.shape[-1]
    if bands not in (1, 2, 3, 4):
        want = "an RGB image" if mode == "RGB" else "a greyscale image"
        raise ImageReadError(path, f"has {bands} bands, but this model takes {want} (1, 3 or 4 "
                                   "bands: grey, RGB or RGBA); pass a 1- or 3-band image or a "
                                   "model made for this band count")
    if arr.ndim == 3:
        arr = arr[..., 0] if bands in (1, 2) else arr[..., :3]
    arr = stretch_to_uint8(arr, path)
    if mode == "L" and arr.ndim == 3:
        luma = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        arr = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    elif mode == "RGB" and arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return arr


def _too_large(path: Path, size: tuple[int, int] | None) -> ImageReadError:
    limit = Image.MAX_IMAGE_PIXELS
    what = f"{size[0]} x {size[1]} px" if size else "the image"
    return ImageReadError(
        path, f"{what} is too large to read whole (more than {2 * limit:,} px, Pillow's "
              "decompression-bomb limit); read it window by window with "
              "shared.rasters.open_scene")


def _open_whole(path: Path):
    """``Image.open`` whose decompression-bomb guard becomes an error naming the file."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError:
        size = None
        try:  # the header alone, without the guard, for the message
            import rasterio

            with rasterio.open(path) as src:
                size = (src.width, src.height)
        except Exception:  # noqa: BLE001 - the size is only for the message
            pass
        raise _too_large(path, size) from None


def _read_tiff_with_rasterio(path: Path, mode: str | None) -> np.ndarray:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and src.width * src.height > 2 * limit:
                raise _too_large(path, (src.width, src.height))
            arr = src.read()
    except RasterioIOError as exc:
        raise ImageReadError(path, f"truncated or corrupt TIFF ({exc})") from None
    arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] == 1:
        arr = arr[..., 0]
    return np.ascontiguousarray(_as_mode(path, arr, mode))


def read_mask(
    path: str | os.PathLike,
    allowed: Iterable[int] | None = None,
) -> np.ndarray:
    """Read a single-channel label or mask image as a (H, W) integer array.

    A colour file whose channels are all equal is accepted and reduced to one channel; a
    genuinely coloured mask is an error. With ``allowed`` every value must be in that set, and
    the error names the file and the unexpected values found.
    """
    arr = read_image(path)
    if arr.ndim == 3:
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
        if not (arr == arr[..., :1]).all():
            raise ImageReadError(path, f"expected a single-channel mask, found {arr.shape[-1]} "
                                       "different colour channels")
        arr = arr[..., 0]
    if arr.dtype.kind == "f":
        raise ImageReadError(path, f"expected integer labels, found {arr.dtype}")
    if allowed is not None:
        allowed_set = {int(v) for v in allowed}
        present = np.unique(arr)
        bad = [int(v) for v in present if int(v) not in allowed_set]
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            raise ImageReadError(path, f"unexpected label values {shown} "
                                       f"(allowed: {sorted(allowed_set)})")
    return arr
