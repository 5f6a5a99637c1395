"""Read images and masks (PNG, JPEG, PGM, TIFF) into numpy with errors that name the file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

_MODES = {None, "L", "RGB", "I;16", "F"}


class ImageReadError(ValueError):
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
            if mode is not None and img.mode != mode:
                img = img.convert(mode)
            arr = np.asarray(img)
    except UnidentifiedImageError:
        if path.suffix.lower() in {".tif", ".tiff"}:
            return _read_tiff_with_rasterio(path, mode)
        raise ImageReadError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if path.suffix.lower() in {".tif", ".tiff"}:
            return _read_tiff_with_rasterio(path, mode)
        raise ImageReadError(path, f"truncated or corrupt image ({exc})") from None
    return np.ascontiguousarray(arr)


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
    if mode == "L" and arr.ndim == 3:
        arr = arr[..., :3].mean(axis=-1).astype(arr.dtype)
    elif mode == "RGB" and arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return np.ascontiguousarray(arr)


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
