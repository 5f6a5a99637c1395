"""The one sliding-window inference engine: plan, read, predict, blend, write.

Framework-free (numpy and rasterio; the model is a callback), streaming, and small:

* **planner**: the :func:`shared.tiles.iter_windows` grid (``edge`` ``"shift"`` or ``"pad"``),
  every window the full tile size (``valid_height``/``valid_width`` tell how much of it lies
  inside the raster);
* **reader**: ``read(window) -> (x, valid)``: ``x`` (C, th, tw) of the full tile, ``valid``
  (th, tw) bool or None (all valid). :class:`ArrayReader` reads an array in memory,
  :class:`SceneReader` a :class:`shared.rasters.Scene` (windowed, boundless);
* **predict_fn**: ``predict_fn(batch) -> probabilities``, ``batch`` float32 **(N, C, th, tw)**
  (channels first: the layout of rasterio and torch; a Keras model transposes inside its
  callback), the result (N, K, th, tw) or (N, th, tw) for one class;
* **blender**: one weighted average, ``sum(w p) / sum(w)``, with the weight chosen by name
  (:data:`BLENDS`, :func:`blend_weight`) and zero on invalid pixels;
* **writers**: anything with ``write(row0, prob, valid)`` receiving the finished rows
  ``prob`` (K, n, W) float32 (NaN where no valid pixel contributed) and ``valid`` (n, W):
  :class:`GeoTIFFWriter` (CRS/transform/nodata, atomic, written strip by strip) and
  :class:`ArrayWriter` (in memory, for evaluation).

Windows are predicted in batches of ``batch_size`` in row-major order, each exactly once, and
blended into a strip of one window height over the full width. Before the first window of a
new window row is blended, the rows above it are final (no later window touches them) and go
to the writers. Memory is therefore ``K x tile height x width`` floats for the strip plus one
batch, whatever the raster's height; only the in-memory writer holds the whole output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.tiles import TileWindow, iter_windows

BLENDS = ("constant", "linear", "cosine", "gaussian")
LINEAR_FLOOR = 0.05      # Mars-CrackNet's ramp never drops below this
GAUSSIAN_SIGMA = 0.125   # sigma of the gaussian weight as a fraction of the tile side

Reader = Callable[[TileWindow], tuple[np.ndarray, "np.ndarray | None"]]
PredictFn = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------ blend weights
def _ramp_linear(d: np.ndarray, n: int, overlap: int, floor: float) -> np.ndarray:
    """Mars-CrackNet's ramp: 0 at the side, 1 from a quarter tile in, never below ``floor``."""
    return np.clip((d + 0.5) / (n / 4), floor, 1.0)


def _ramp_cosine(d: np.ndarray, n: int, overlap: int, margin: int | None) -> np.ndarray:
    """The dune mapper's rule: 0 in a ``margin`` (a quarter of the overlap by default) where
    a window lacks context, then a cosine (sin^2) ramp over the rest of the overlap, then 1."""
    margin = overlap // 4 if margin is None else int(margin)
    ramp = max(overlap - 2 * margin, 1)
    t = np.clip((d - margin + 0.5) / ramp, 0.0, 1.0)
    return np.where(d < margin, 0.0, np.sin(0.5 * np.pi * t) ** 2)


def _ramp_gaussian(d: np.ndarray, n: int, overlap: int, sigma: float) -> np.ndarray:
    """Half a gaussian centred on the tile (nnU-Net's rule), sigma = ``sigma`` x tile side."""
    x = np.minimum(d + 0.5, n / 2) - n / 2
    return np.maximum(np.exp(-0.5 * (x / (sigma * n)) ** 2), 1e-3)


def side_profile(kind: str, n: int, overlap: int, taper_start: bool = True,
                 taper_end: bool = True, *, floor: float = LINEAR_FLOOR,
                 margin: int | None = None, sigma: float = GAUSSIAN_SIGMA) -> np.ndarray:
    """1-D weight (float64, length ``n``) of a window side: the ``kind`` ramp measured from
    each tapered end (the minimum of the two), 1 elsewhere; ``constant`` is all ones."""
    if kind not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {kind!r}")
    w = np.ones(n)
    if kind == "constant":
        return w
    d = np.arange(n, dtype=np.float64)
    ramp = {"linear": lambda x: _ramp_linear(x, n, overlap, floor),
            "cosine": lambda x: _ramp_cosine(x, n, overlap, margin),
            "gaussian": lambda x: _ramp_gaussian(x, n, overlap, sigma)}[kind]
    if taper_start:
        w = np.minimum(w, ramp(d))
    if taper_end:
        w = np.minimum(w, ramp(n - 1 - d))
    return w


@dataclass(frozen=True)
class Blend:
    """A blend weight: ``kind`` (:data:`BLENDS`) and its parameters.

    ``constant``: every pixel of a window counts the same (a plain average); ``linear``: a
    ramp from the sides over a quarter tile, floored at ``floor`` (Mars-CrackNet's
    ``blend_window``); ``cosine``: 0 in ``margin`` px (default overlap // 4), then a sin^2 ramp
    over the rest of the overlap (the dune mapper's rule); ``gaussian``: a gaussian of sigma
    ``sigma`` x tile. ``border``: taper the window sides that lie on the raster's border too
    (default: only for ``linear``, as Mars-CrackNet did; the others keep full weight there,
    where no other window covers the pixels).
    """

    kind: str = "constant"
    floor: float = LINEAR_FLOOR
    margin: int | None = None
    sigma: float = GAUSSIAN_SIGMA
    border: bool | None = None

    def __post_init__(self):
        if self.kind not in BLENDS:
            raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {self.kind!r}")

    @property
    def taper_border(self) -> bool:
        return self.kind == "linear" if self.border is None else bool(self.border)

    def weight(self, tile: tuple[int, int], overlap: tuple[int, int],
               sides: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> np.ndarray:
        """(th, tw) float32 weight of a window whose (top, bottom, left, right) sides are
        tapered as ``sides`` says."""
        kw = dict(floor=self.floor, margin=self.margin, sigma=self.sigma)
        wr = side_profile(self.kind, tile[0], overlap[0], sides[0], sides[1], **kw)
        wc = side_profile(self.kind, tile[1], overlap[1], sides[2], sides[3], **kw)
        return np.outer(wr, wc).astype(np.float32)


def blend_weight(kind: str | Blend, tile: int | tuple[int, int], overlap: int | tuple[int, int],
                 sides: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> np.ndarray:
    """The (th, tw) float32 weight of ``kind`` (a name of :data:`BLENDS` or a :class:`Blend`)."""
    blend = kind if isinstance(kind, Blend) else Blend(str(kind))
    return blend.weight(_pair(tile), _pair(overlap), sides)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


# ------------------------------------------------------------------------ planner
def iter_plan(height: int, width: int, tile: int | tuple[int, int],
              stride: int | tuple[int, int] | None = None, edge: str = "shift"
              ) -> Iterator[TileWindow]:
    """Row-major windows of the full tile size over a ``height`` x ``width`` raster
    (:func:`shared.tiles.iter_windows`; a raster smaller than a tile gets one window that
    reaches past it, whatever ``edge``), generated one by one."""
    th, tw = _pair(tile)
    stride = (th, tw) if stride is None else _pair(stride)
    if edge not in ("shift", "pad"):
        raise ValueError(f"edge must be 'shift' or 'pad', got {edge!r}")
    for w in iter_windows(height, width, (th, tw), stride, edge=edge):
        yield TileWindow(w.row, w.col, th, tw, min(th, height - w.row), min(tw, width - w.col))


def plan(height: int, width: int, tile: int | tuple[int, int],
         stride: int | tuple[int, int] | None = None, edge: str = "shift") -> list[TileWindow]:
    """The windows of :func:`iter_plan` as a list."""
    return list(iter_plan(height, width, tile, stride, edge))


# ------------------------------------------------------------------------ readers
class ArrayReader:
    """Windows of an in-memory (C, H, W) array (an (H, W) one is one channel), zero past
    the edge; ``valid`` (H, W) optional (past the edge is invalid only when it is given)."""

    def __init__(self, array: np.ndarray, valid: np.ndarray | None = None):
        a = np.asarray(array)
        self.array = a[None] if a.ndim == 2 else a
        self.valid = None if valid is None else np.asarray(valid, bool)
        self.height, self.width = self.array.shape[1:]

    def __call__(self, win: TileWindow) -> tuple[np.ndarray, np.ndarray | None]:
        a, vh, vw = self.array, win.valid_height, win.valid_width
        part = a[:, win.row:win.row + vh, win.col:win.col + vw]
        if (vh, vw) == (win.height, win.width):
            return part, None if self.valid is None else self.valid[win.slices]
        x = np.zeros((a.shape[0], win.height, win.width), a.dtype)
        x[:, :vh, :vw] = part
        if self.valid is None:
            return x, None
        v = np.zeros((win.height, win.width), bool)
        v[:vh, :vw] = self.valid[win.slices]
        return x, v


class SceneReader:
    """Windows of a :class:`shared.rasters.Scene`, read boundless (outside = invalid).

    ``uint8=True`` reads through the scene's one stretch (:meth:`Scene.read_uint8`, valid
    pixels 1..255, invalid 0), else raw float32 values with invalid pixels set to ``fill``;
    ``bands`` (1-based) and ``gray`` are passed on. ``invalid(x) -> (th, tw) bool`` (raw
    reads only) replaces the scene's no-data rule inside the raster (e.g. the dune mapper's
    "any band equals nodata"); outside stays invalid."""

    def __init__(self, scene: Any, *, uint8: bool = True, bands: Sequence[int] | None = None,
                 gray: bool = False, fill: float = 0.0,
                 invalid: Callable[[np.ndarray], np.ndarray] | None = None):
        self.scene, self.uint8, self.bands, self.gray, self.fill = scene, uint8, bands, gray, fill
        self.invalid = invalid
        self.height, self.width = scene.height, scene.width

    def __call__(self, win: TileWindow) -> tuple[np.ndarray, np.ndarray]:
        if self.uint8:
            return self.scene.read_uint8(win.row, win.col, win.height, win.width,
                                         bands=self.bands, gray=self.gray)
        x, valid = self.scene.read(win.row, win.col, win.height, win.width, bands=self.bands)
        if self.invalid is not None:
            valid = np.zeros_like(valid)
            valid[:win.valid_height, :win.valid_width] = True
            valid &= ~np.asarray(self.invalid(x), bool)
        if not valid.all():
            x[:, ~valid] = self.fill
        return x, valid


class RowRingReader:
    """Windows of a wide :class:`shared.rasters.Scene` from a ring of whole-width rows, in the
    file's dtype, each block of the file decoded once (for many-band rasters such as the dune
    mapper's 64-band embeddings, where reading window by window decodes each interior block
    up to four times and GDAL's cache would have to hold two block rows to spare that).

    The ring holds ``tile + stride`` rows (raster row ``r`` in slot ``r % (tile + stride)``);
    consecutive window rows share ``tile - stride`` rows, which stay. :func:`run` calls
    :meth:`start_row` when a window row starts: it waits for the rows it needs, then decodes
    the ``stride`` rows the next window row adds in a background thread while the model
    predicts. Invalid pixels (``invalid(raw) -> (n, W) bool``, default the scene's no-data
    rule without its alpha band; rows past the bottom; columns past the right edge) are
    ``fill``. Memory: ``bands x (tile + stride) x max(width, tile)`` of the file's dtype
    (:meth:`nbytes`). Close it (or use it as a context manager) to stop the thread."""

    def __init__(self, scene: Any, tile: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None, *,
                 bands: Sequence[int] | None = None,
                 invalid: Callable[[np.ndarray], np.ndarray] | None = None, fill: float = 0):
        from concurrent.futures import ThreadPoolExecutor

        from shared.rasters import nodata_mask

        self.scene, self.bands, self.fill = scene, bands, fill
        self.tile = _pair(tile)
        self.size = self.tile[0] + (self.tile[0] if stride is None else _pair(stride)[0])
        self.height, self.width = scene.height, scene.width
        self.invalid = invalid or (lambda raw: nodata_mask(raw, scene.nodata))
        count, dtype = self._layout(scene, bands)
        self.raw = np.zeros((count, self.size, max(scene.width, self.tile[1])), dtype)
        self.bad = np.ones(self.raw.shape[1:], bool)
        self.end = 0  # rows < end are read, being read, or lie past the bottom
        self.pool, self.pending = ThreadPoolExecutor(1, thread_name_prefix="rows"), None
        self._wrap: np.ndarray | None = None

    @staticmethod
    def _layout(scene: Any, bands: Sequence[int] | None) -> tuple[int, np.dtype]:
        idx = range(1, scene.count + 1) if bands is None else [int(b) for b in bands]
        return len(idx), np.result_type(*[scene.dtypes[i - 1] for i in idx])

    @classmethod
    def nbytes(cls, scene: Any, tile: int | tuple[int, int],
               stride: int | tuple[int, int] | None = None,
               bands: Sequence[int] | None = None) -> int:
        """Bytes the ring of ``scene`` would take."""
        th, tw = _pair(tile)
        sh = th if stride is None else _pair(stride)[0]
        count, dtype = cls._layout(scene, bands)
        return count * (th + sh) * max(scene.width, tw) * np.dtype(dtype).itemsize

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def __enter__(self) -> RowRingReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start_row(self, row: int, next_row: int | None) -> None:
        """Hold rows ``row .. row + tile`` (waiting for the background read, whose error is
        raised here), then start reading the rows the next window row adds."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()
        th = self.tile[0]
        self._read_upto(row + th)
        if next_row is not None:
            if next_row - row > self.size - th:
                raise ValueError(f"window rows {row} and {next_row} are further apart than "
                                 f"the ring's stride {self.size - th}")
            self.pending = self.pool.submit(self._read_upto, next_row + th)

    def _read_upto(self, stop: int) -> None:
        r, self.end = self.end, max(self.end, stop)
        while r < stop:  # at most two runs of ring slots
            slot = r % self.size
            n = min(stop - r, self.size - slot)
            self._read(r, slot, n)
            r += n

    def _read(self, row: int, slot: int, n: int) -> None:
        inside, W = max(0, min(n, self.height - row)), self.width
        raw, bad = self.raw[:, slot:slot + inside, :W], self.bad[slot:slot + inside, :W]
        if inside:
            self.scene.read_raw(row, 0, inside, W, bands=self.bands, out=raw)
            bad[:] = self.invalid(raw)
            if bad.any():
                raw[:, bad] = self.fill
        self.raw[:, slot + inside:slot + n] = self.fill  # past the bottom: not data
        self.bad[slot + inside:slot + n] = True

    def __call__(self, win: TileWindow) -> tuple[np.ndarray, np.ndarray]:
        """``(x (bands, th, tw) in the file's dtype, valid (th, tw))`` of a window whose rows
        the ring holds: a view into the ring, or where the window wraps round it a buffer
        the next wrapped window overwrites (copy it before reading on)."""
        (th, tw), c, s0 = self.tile, win.col, win.row % self.size
        if s0 + th <= self.size:
            return self.raw[:, s0:s0 + th, c:c + tw], ~self.bad[s0:s0 + th, c:c + tw]
        k = self.size - s0  # the window wraps round the ring: one buffer, reused (the
        if self._wrap is None:  # engine copies the window into its batch at once)
            self._wrap = np.empty((self.raw.shape[0], th, tw), self.raw.dtype)
        x = np.concatenate([self.raw[:, s0:, c:c + tw], self.raw[:, :th - k, c:c + tw]], 1,
                           out=self._wrap)
        bad = np.concatenate([self.bad[s0:, c:c + tw], self.bad[:th - k, c:c + tw]])
        return x, ~bad


# ------------------------------------------------------------------------ writers
class ArrayWriter:
    """Collects the output in memory: ``prob`` (K, H, W) float32 (NaN where nothing valid
    contributed) and ``valid`` (H, W) bool (for evaluation and small images)."""

    def __init__(self, height: int, width: int):
        self.height, self.width = int(height), int(width)
        self.prob: np.ndarray | None = None
        self.valid = np.zeros((self.height, self.width), bool)

    def write(self, row0: int, prob: np.ndarray, valid: np.ndarray) -> None:
        if self.prob is None:
            self.prob = np.full((prob.shape[0], self.height, self.width), np.nan, np.float32)
        self.prob[:, row0:row0 + prob.shape[1]] = prob
        self.valid[row0:row0 + prob.shape[1]] = valid


def float_bands(prob: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The default GeoTIFF encoding: the probabilities as float32, NaN where invalid."""
    return np.where(valid, prob, np.nan).astype(np.float32)


class GeoTIFFWriter:
    """The finished rows into a GeoTIFF with the given CRS, transform and nodata, written
    atomically (it appears at ``path`` only when complete) and strip by strip.

    ``encode(prob (K, n, W), valid (n, W)) -> (count, n, W)`` array of ``dtype`` (default:
    :func:`float_bands`). Use it as a context manager; ``dataset`` is the open rasterio
    dataset (band descriptions, colour tables). ``dataset_mask``: also write GDAL's
    per-dataset mask (255 valid, 0 not). Other keywords go to
    :func:`shared.rasters.geotiff_writer` (``blocksize``, ``compress``, ...)."""

    def __init__(self, path: Any, *, width: int, height: int, count: int = 1,
                 dtype: str = "float32", crs: Any = None, transform: Any = None,
                 nodata: float | None = float("nan"),
                 encode: Callable[[np.ndarray, np.ndarray], np.ndarray] = float_bands,
                 dataset_mask: bool = False, **profile: Any):
        self.path, self.width, self.encode = path, int(width), encode
        self.dataset_mask = dataset_mask
        self._kw = dict(width=width, height=height, count=count, dtype=dtype, crs=crs,
                        transform=transform, nodata=nodata, **profile)
        self._ctx = None
        self.dataset = None

    def __enter__(self) -> GeoTIFFWriter:
        from shared.rasters import geotiff_writer

        self._ctx = geotiff_writer(self.path, **self._kw)
        self.dataset = self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        ctx, self._ctx, self.dataset = self._ctx, None, None
        return ctx.__exit__(*exc)

    def write(self, row0: int, prob: np.ndarray, valid: np.ndarray) -> None:
        from rasterio.windows import Window

        arr = self.encode(prob, valid)
        win = Window(0, row0, self.width, prob.shape[1])
        if self.dataset_mask:
            self.dataset.write_mask(valid.astype(np.uint8) * 255, window=win)
        self.dataset.write(arr if arr.ndim == 3 else arr[None], window=win)


# ------------------------------------------------------------------------ the engine
@dataclass
class _Strip:
    """Blend accumulators of raster rows ``top .. top + rows`` over the full width."""

    rows: int
    width: int
    top: int = 0
    acc: np.ndarray | None = None
    wsum: np.ndarray = field(init=False)

    def __post_init__(self):
        self.wsum = np.zeros((self.rows, self.width), np.float32)

    def add(self, p: np.ndarray, w: np.ndarray, win: TileWindow) -> None:
        if self.acc is None:
            self.acc = np.zeros((p.shape[0], self.rows, self.width), np.float32)
        r0, h, c, wd = win.row - self.top, win.valid_height, win.col, win.valid_width
        w = w[:h, :wd]
        self.acc[:, r0:r0 + h, c:c + wd] += p[:, :h, :wd] * w
        self.wsum[r0:r0 + h, c:c + wd] += w

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and validity of the first ``n`` rows; the strip moves down."""
        wsum = self.wsum[:n]
        valid = wsum > 0
        k = 1 if self.acc is None else self.acc.shape[0]
        prob = np.full((k, n, self.width), np.nan, np.float32)
        if self.acc is not None:
            np.divide(self.acc[:, :n], wsum, out=prob, where=valid)
        for a in (self.acc, self.wsum):
            if a is not None:
                a[..., :self.rows - n, :] = a[..., n:, :].copy()
                a[..., self.rows - n:, :] = 0
        self.top += n
        return prob, valid


@dataclass
class EngineStats:
    windows: int = 0            # windows planned
    windows_predicted: int = 0  # windows sent to predict_fn
    windows_skipped: int = 0    # windows without a valid pixel (``skip_empty``)
    forward_calls: int = 0
    classes: int | None = None


def progress_default() -> bool:
    """A progress bar only on a terminal."""
    return sys.stderr.isatty()


def run(read: Reader, predict_fn: PredictFn, height: int, width: int,
        tile: int | tuple[int, int], writers: Iterable[Any], *,
        stride: int | tuple[int, int] | None = None, edge: str = "shift",
        blend: str | Blend = "constant", batch_size: int = 8, skip_empty: bool = False,
        progress: bool | None = None, desc: str = "windows") -> EngineStats:
    """Predict a ``height`` x ``width`` raster window by window and stream the blended
    probabilities to ``writers`` (each gets every row once, top to bottom).

    ``read``/``predict_fn``/``writers`` as in the module docstring; ``stride`` defaults to the
    tile (no overlap); ``edge`` as in :func:`plan`; ``blend`` a name of :data:`BLENDS` or a
    :class:`Blend`; ``skip_empty`` leaves windows without a valid pixel unpredicted (they
    would get zero weight anyway); ``progress`` None = on when stderr is a terminal.

    A reader with a ``start_row(row, next_row)`` method is told when a window row starts
    (``next_row``: the next window row's offset, None for the last), e.g. to hold the rows
    of the window row in memory and read the next ones in the background."""
    from tqdm import tqdm

    th, tw = _pair(tile)
    stride = (th, tw) if stride is None else _pair(stride)
    if not (0 < stride[0] <= th and 0 < stride[1] <= tw):
        raise ValueError(f"stride must be in 1..tile, got {stride} for tile {(th, tw)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    blend = blend if isinstance(blend, Blend) else Blend(str(blend))
    overlap = (th - stride[0], tw - stride[1])
    writers = list(writers)
    total, row_starts = 0, []  # the windows are not stored, only their row offsets
    for win in iter_plan(height, width, (th, tw), stride, edge):
        total += 1
        if not row_starts or row_starts[-1] != win.row:
            row_starts.append(win.row)
    next_row = dict(zip(row_starts, row_starts[1:] + [None]))
    start_row = getattr(read, "start_row", None)
    stats = EngineStats(windows=total)
    strip = _Strip(th, width)
    weights: dict[tuple[bool, ...], np.ndarray] = {}

    def weight(win: TileWindow) -> np.ndarray:
        b = blend.taper_border
        sides = (b or win.row > 0, b or win.row + th < height,
                 b or win.col > 0, b or win.col + tw < width)
        if sides not in weights:
            weights[sides] = blend.weight((th, tw), overlap, sides)
        return weights[sides]

    def flush(upto: int) -> None:
        n = min(upto, height) - strip.top
        if n > 0:
            prob, valid = strip.take(n)
            for w in writers:
                w.write(strip.top - n, prob, valid)

    def blend_batch(batch: list, x: np.ndarray) -> None:
        p = np.asarray(predict_fn(x[:len(batch)]), np.float32)
        if p.ndim == 3:
            p = p[:, None]
        stats.forward_calls += 1
        stats.windows_predicted += len(batch)
        stats.classes = int(p.shape[1])
        for pi, (win, valid) in zip(p, batch):
            if win.row > strip.top:
                flush(win.row)
            w = weight(win)
            if valid is not None:
                w = np.where(valid, w, np.float32(0))
            strip.add(pi, w, win)

    bar = tqdm(total=total, desc=desc, unit="win", leave=False,
               disable=not (progress_default() if progress is None else progress))
    x: np.ndarray | None = None
    pending: list = []
    try:
        current = None
        for win in iter_plan(height, width, (th, tw), stride, edge):
            if start_row is not None and win.row != current:
                current = win.row
                start_row(win.row, next_row[win.row])
            data, valid = read(win)
            bar.update(1)
            if valid is not None and skip_empty and not valid.any():
                stats.windows_skipped += 1
                continue
            if x is None:
                x = np.empty((batch_size, data.shape[0], th, tw), np.float32)
            x[len(pending)] = data
            pending.append((win, None if valid is None or valid.all() else valid))
            if len(pending) == batch_size:
                blend_batch(pending, x)
                pending = []
        if pending:
            blend_batch(pending, x)
        flush(height)
    finally:
        bar.close()
    return stats


def predict_array(array: np.ndarray, predict_fn: PredictFn, tile: int | tuple[int, int], *,
                  valid: np.ndarray | None = None, **kw: Any) -> np.ndarray:
    """(K, H, W) blended probabilities of an in-memory (C, H, W) array (an
    :class:`ArrayReader` into an :class:`ArrayWriter`); keywords as :func:`run`."""
    reader = ArrayReader(array, valid)
    out = ArrayWriter(reader.height, reader.width)
    kw.setdefault("progress", False)
    run(reader, predict_fn, reader.height, reader.width, tile, [out], **kw)
    return out.prob
