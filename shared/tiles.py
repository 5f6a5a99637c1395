"""A regular grid of windows over an image or raster of any size."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

EDGE_MODES = ("shift", "pad", "drop")


@dataclass(frozen=True)
class TileWindow:
    """One window of the grid, in pixel coordinates of the full image.

    ``row``/``col`` are the window's top-left corner; ``height``/``width`` its size (always the
    requested tile size, except with ``edge="pad"`` where part of it lies past the edge and
    ``valid_height``/``valid_width`` say how much is inside).
    """

    row: int
    col: int
    height: int
    width: int
    valid_height: int
    valid_width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices of the part inside the image."""
        return (slice(self.row, self.row + self.valid_height),
                slice(self.col, self.col + self.valid_width))

    def as_rasterio(self):
        """The same window as a ``rasterio.windows.Window`` (full tile size)."""
        from rasterio.windows import Window

        return Window(self.col, self.row, self.width, self.height)


def _starts(length: int, size: int, stride: int, edge: str) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    last_end = starts[-1] + size
    if last_end < length:
        if edge == "shift":
            starts.append(length - size)
        elif edge == "pad":
            starts.append(starts[-1] + stride)
    return starts


def iter_windows(
    height: int,
    width: int,
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    edge: str = "shift",
) -> Iterator[TileWindow]:
    """Yield windows of ``size`` every ``stride`` pixels, row-major, covering the image.

    Edge handling when the grid does not fit exactly:

    * ``"shift"`` (default): the last window of a row/column is moved back so it ends at the
      edge; every window is inside and full size (the image must be at least one tile, else
      the single window is clipped to the image).
    * ``"pad"``: windows keep the regular grid and the last ones reach past the edge; the
      caller pads (``valid_*`` tell how much is real).
    * ``"drop"``: incomplete windows at the edge are skipped (pixels there are not covered).
    """
    if edge not in EDGE_MODES:
        raise ValueError(f"edge must be one of {EDGE_MODES}, got {edge!r}")
    th, tw = (size, size) if isinstance(size, int) else size
    if stride is None:
        stride = (th, tw)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    for name, v in (("height", height), ("width", width), ("tile size", th), ("tile size", tw),
                    ("stride", sh), ("stride", sw)):
        if int(v) <= 0:
            raise ValueError(f"{name} must be positive, got {v}")
    if edge == "drop" and (height < th or width < tw):
        return
    rows = _starts(height, th, sh, edge)
    cols = _starts(width, tw, sw, edge)
    if edge == "drop":
        rows = [r for r in rows if r + th <= height]
        cols = [c for c in cols if c + tw <= width]
    for r in rows:
        for c in cols:
            vh = min(th, height - r)
            vw = min(tw, width - c)
            if edge == "shift":
                yield TileWindow(r, c, vh, vw, vh, vw)
            else:
                yield TileWindow(r, c, th, tw, vh, vw)
