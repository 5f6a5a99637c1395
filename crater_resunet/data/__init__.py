"""YOLO crater labels -> masks, and the ``tf.data`` input pipeline.

The LU3M6TGT layout (and the one our converters write)::

    <root>/{train,valid}/images/<stem>.jpg|jpeg|png|bmp
    <root>/{train,valid}/labels/<stem>.txt     one line per crater: class xc yc w h (in [0, 1])

An image without a label file counts as having no crater; a label file without an image is
reported (and ignored). Malformed label lines raise :class:`LabelError` naming file and line.
Masks are made at the model resolution from the boxes: ``box`` (the paper: each box filled,
corners truncated to int) or ``ellipse`` (the ellipse inscribed in each box, closer to a
crater's outline).

TensorFlow is imported only inside :func:`make_dataset`, so the label tools work without it.
Synthetic tiles for tests: ``crater_resunet.data.synthetic``.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
MASK_SHAPES = ("box", "ellipse")
SPLITS = ("train", "valid")
ROUNDING_TOLERANCE = 1e-6  # YOLO values this far outside [0, 1] are rounding: clipped, warned
MIN_SEMI_AXIS = 0.75  # px: every ellipse covers at least its centre pixel
_PAD = np.array([-1.0e4, -1.0e4, -1.0e4 + 1.0, -1.0e4 + 1.0], dtype=np.float32)


class LabelWarning(UserWarning):
    """A label value repaired on reading (a coordinate a rounding error outside [0, 1])."""


class LabelError(ValueError):
    """A label file or line that does not follow ``class xc yc w h`` with values in [0, 1]."""

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str):
        self.path, self.line, self.reason = Path(path), line, reason
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {reason}")


def parse_yolo_text(text: str, path: str | os.PathLike = "<labels>",
                    with_confidence: bool = False) -> np.ndarray:
    """Parse YOLO label text into an (N, 5) float array ``class xc yc w h``.

    With ``with_confidence`` a sixth column (a detection's confidence in [0, 1]) is accepted
    and kept, giving (N, 6); missing confidences read as 1.
    """
    rows = []
    clipped: list[str] = []
    ncols = 6 if with_confidence else 5
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        allowed = (5, 6) if with_confidence else (5,)
        if len(parts) not in allowed:
            fields = "class xc yc w h" + (" [conf]" if with_confidence else "")
            raise LabelError(path, lineno, f"expected {' or '.join(map(str, allowed))} fields "
                                           f"({fields}), found {len(parts)}: {line!r}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise LabelError(path, lineno, f"non-numeric value in {line!r}") from None
        if not all(np.isfinite(values)):
            raise LabelError(path, lineno, f"non-finite value in {line!r}")
        cls = values[0]
        if cls < 0 or cls != int(cls):
            raise LabelError(path, lineno, f"class must be a non-negative integer, got {parts[0]}")
        xc, yc, w, h = values[1:5]
        if w < -ROUNDING_TOLERANCE or h < -ROUNDING_TOLERANCE:
            raise LabelError(path, lineno, f"negative box size (w={w}, h={h})")
        for k, (name, v) in enumerate((("x_center", xc), ("y_center", yc), ("width", w),
                                       ("height", h))):
            if 0.0 <= v <= 1.0:
                continue
            if -ROUNDING_TOLERANCE <= v <= 1.0 + ROUNDING_TOLERANCE:
                values[1 + k] = min(max(v, 0.0), 1.0)
                clipped.append(f"{lineno}:{name}={v}")
                continue
            raise LabelError(path, lineno, f"{name}={v} outside [0, 1] (values must be "
                                           "normalised by the image size)")
        if with_confidence:
            conf = values[5] if len(values) == 6 else 1.0
            if not 0.0 <= conf <= 1.0:
                raise LabelError(path, lineno, f"confidence={conf} outside [0, 1]")
            values = values[:5] + [conf]
        rows.append(values)
    if clipped:
        shown = ", ".join(clipped[:3]) + (f" and {len(clipped) - 3} more" if len(clipped) > 3
                                          else "")
        warnings.warn(f"{path}: {len(clipped)} coordinate(s) outside [0, 1] by at most "
                      f"{ROUNDING_TOLERANCE:g} (rounding) clipped to [0, 1]: {shown}",
                      LabelWarning, stacklevel=2)
    return np.asarray(rows, dtype=np.float64).reshape(-1, ncols)


def read_yolo_labels(path: str | os.PathLike | None, with_confidence: bool = False) -> np.ndarray:
    """Read a YOLO label file; ``None`` or a missing file means no crater."""
    ncols = 6 if with_confidence else 5
    if path is None or not Path(path).exists():
        return np.zeros((0, ncols))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LabelError(path, None, "not a UTF-8 text file") from None
    return parse_yolo_text(text, path, with_confidence)


def yolo_to_pixel_boxes(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) int boxes ``x1 y1 x2 y2`` (x2/y2 exclusive) at ``width`` x ``height``.

    Corners are truncated to int as in the reference and clipped to the image. The clipping
    is a deliberate change: in the notebook a box reaching past the left or top border
    (``int(xc - w/2) < 0``) gives an empty (negative-start) slice, so that crater vanishes
    from its mask; here the part inside the image is kept (README, differences table).
    """
    labels = np.asarray(labels, dtype=np.float64)
    if labels.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    xc, yc, w, h = labels[:, 1] * width, labels[:, 2] * height, labels[:, 3] * width, \
        labels[:, 4] * height
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1).astype(np.int64)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    return boxes


def mask_geometry(labels: np.ndarray, width: int, height: int, shape: str = "box") -> np.ndarray:
    """Per-crater float parameters used to rasterise the mask, (N, 4).

    ``box``: the truncated corners ``x1 y1 x2 y2``; ``ellipse``: ``cx cy a b`` (centre and
    semi-axes in pixels, semi-axes at least ``MIN_SEMI_AXIS``).
    """
    if shape not in MASK_SHAPES:
        raise ValueError(f"mask shape must be one of {MASK_SHAPES}, got {shape!r}")
    labels = np.asarray(labels, dtype=np.float64)
    if labels.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if shape == "box":
        return yolo_to_pixel_boxes(labels, width, height).astype(np.float32)
    geom = np.stack([labels[:, 1] * width, labels[:, 2] * height,
                     np.maximum(labels[:, 3] * width / 2, MIN_SEMI_AXIS),
                     np.maximum(labels[:, 4] * height / 2, MIN_SEMI_AXIS)], axis=1)
    return geom.astype(np.float32)


def rasterise(geom: np.ndarray, height: int, width: int, shape: str = "box") -> np.ndarray:
    """(H, W) uint8 mask, 1 inside any crater (NumPy twin of the ``tf.data`` rasteriser)."""
    geom = np.asarray(geom, dtype=np.float32).reshape(-1, 4)
    mask = np.zeros((height, width), dtype=bool)
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    for g in geom:
        if shape == "box":
            ix = (xs >= g[0]) & (xs < g[2])
            iy = (ys >= g[1]) & (ys < g[3])
            mask |= iy[:, None] & ix[None, :]
        else:
            dx = ((xs + 0.5 - g[0]) / g[2]) ** 2
            dy = ((ys + 0.5 - g[1]) / g[3]) ** 2
            mask |= (dy[:, None] + dx[None, :]) <= 1.0
    return mask.astype(np.uint8)


def labels_to_mask(labels: np.ndarray, height: int, width: int, shape: str = "box") -> np.ndarray:
    """The training mask of one image at ``height`` x ``width``."""
    return rasterise(mask_geometry(labels, width, height, shape), height, width, shape)


# ------------------------------------------------------------------------------ the layout
@dataclass
class SplitIndex:
    """Images of one split with their label files (``None`` = no label file = no crater)."""

    root: Path
    split: str
    images: list[Path] = field(default_factory=list)
    labels: list[Path | None] = field(default_factory=list)
    orphan_labels: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def index_split(root: str | os.PathLike, split: str, warn: bool = True) -> SplitIndex:
    """Pair ``<root>/<split>/images/*`` with ``<root>/<split>/labels/<stem>.txt``."""
    root = Path(root)
    img_dir, lbl_dir = root / split / "images", root / split / "labels"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{img_dir}: image folder not found (expected the YOLO layout "
                                "<root>/{train,valid}/{images,labels})")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not images:
        raise FileNotFoundError(f"{img_dir}: no images ({', '.join(IMAGE_EXTS)})")
    stems = {p.stem for p in images}
    if len(stems) != len(images):
        from shared.runs import UserError

        raise UserError(f"{img_dir}: two images share a file stem; labels would be ambiguous")
    idx = SplitIndex(root, split)
    for p in images:
        lbl = lbl_dir / f"{p.stem}.txt"
        idx.images.append(p)
        idx.labels.append(lbl if lbl.is_file() else None)
    if lbl_dir.is_dir():
        idx.orphan_labels = sorted(p for p in lbl_dir.glob("*.txt") if p.stem not in stems)
    if warn and idx.orphan_labels:
        shown = ", ".join(str(p) for p in idx.orphan_labels[:5])
        more = f" and {len(idx.orphan_labels) - 5} more" if len(idx.orphan_labels) > 5 else ""
        print(f"warning: {len(idx.orphan_labels)} label file(s) without an image, ignored: "
              f"{shown}{more}", file=sys.stderr)
    return idx


EIGHT_BIT_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr")


def check_images(index: SplitIndex) -> None:
    """Decode every image of a split once (PIL) so that a truncated, unreadable or non-8-bit
    file is one error naming it, not a TensorFlow graph error in the middle of an epoch."""
    from PIL import Image

    from shared.runs import UserError

    for p in index.images:
        try:
            with Image.open(p) as im:
                mode = im.mode
                im.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise UserError(f"{p}: unreadable or truncated image ({exc})") from None
        if mode not in EIGHT_BIT_MODES:
            raise UserError(f"{p}: {mode} image; training reads 8-bit images (grey, RGB or "
                            "palette): convert it to 8 bits (predict reads any bit depth)")


def load_labels(index: SplitIndex) -> list[np.ndarray]:
    """Parse every label file of a split (a malformed line raises :class:`LabelError`)."""
    return [read_yolo_labels(p) for p in index.labels]


def padded_geometry(labels: list[np.ndarray], image_size: tuple[int, int],
                    shape: str) -> np.ndarray:
    """(N, B, 4) float32 geometry, padded with a never-inside sentinel to the largest count."""
    h, w = image_size
    geoms = [mask_geometry(lab, w, h, shape) for lab in labels]
    most = max([len(g) for g in geoms] + [1])
    out = np.tile(_PAD, (len(geoms), most, 1)).astype(np.float32)
    for i, g in enumerate(geoms):
        out[i, :len(g)] = g
    return out


def base_dataset(index: SplitIndex, image_size=(256, 256), mask_shape: str = "box",
                 cache: bool = False, channel_order: str = "bgr", labels=None):
    """An unbatched ``tf.data.Dataset`` of (image, mask) pairs in file order.

    Images are read and decoded in parallel (``tf.io.decode_image``), converted to the
    reference's BGR channel order by default, resized bilinearly to ``image_size`` and divided
    by 255; masks are rasterised in TensorFlow from the boxes at that resolution. ``cache``
    keeps decoded tiles in memory (small data sets).
    """
    import tensorflow as tf

    if channel_order not in ("bgr", "rgb"):
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    h, w = int(image_size[0]), int(image_size[1])
    if labels is None:
        labels = load_labels(index)
    geom = padded_geometry(labels, (h, w), mask_shape)
    paths = [str(p) for p in index.images]
    xs = tf.range(w, dtype=tf.float32)
    ys = tf.range(h, dtype=tf.float32)

    def raster(g):
        if mask_shape == "box":
            ix = (xs[None, :] >= g[:, 0:1]) & (xs[None, :] < g[:, 2:3])
            iy = (ys[None, :] >= g[:, 1:2]) & (ys[None, :] < g[:, 3:4])
            inside = iy[:, :, None] & ix[:, None, :]
        else:
            dx = tf.square((xs[None, :] + 0.5 - g[:, 0:1]) / g[:, 2:3])
            dy = tf.square((ys[None, :] + 0.5 - g[:, 1:2]) / g[:, 3:4])
            inside = (dy[:, :, None] + dx[:, None, :]) <= 1.0
        return tf.cast(tf.reduce_any(inside, axis=0), tf.float32)[..., None]

    def load(path, g):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        if channel_order == "bgr":
            img = tf.reverse(img, axis=[-1])
        img = tf.image.resize(tf.cast(img, tf.float32), (h, w), method="bilinear")
        img = tf.ensure_shape(img / 255.0, (h, w, 3))
        return img, raster(g)

    ds = tf.data.Dataset.from_tensor_slices((paths, geom))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.cache() if cache else ds


def epoch_batches(base, n: int, batch_size: int, shuffle_seed: int | None = None,
                  augment_seed: int | None = None):
    """Batches of one pass over ``base`` (``n`` elements): shuffled with ``shuffle_seed`` and
    augmented (seeded random flips and 90-degree turns) from ``augment_seed`` when given.

    A trainer passes seeds derived from (run seed, epoch), so epoch ``k`` draws the same order
    and augmentation whether the run was interrupted before it or not.
    """
    import tensorflow as tf

    ds = base
    if shuffle_seed is not None:
        ds = ds.shuffle(n, seed=int(shuffle_seed), reshuffle_each_iteration=False)
    if augment_seed is not None:
        def aug(img, mask, s):
            both = tf.concat([img, mask], axis=-1)
            both = tf.image.stateless_random_flip_left_right(both, s)
            k = tf.random.stateless_uniform((), s + 1, 0, 4, dtype=tf.int32)
            both = tf.image.rot90(both, k)
            return both[..., :3], both[..., 3:]

        start = int(augment_seed) % (2**30)
        counter = tf.data.Dataset.counter(start).map(lambda c: tf.stack([c, c + 7]))
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda pair, s: aug(pair[0], pair[1], tf.cast(s, tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_dataset(index: SplitIndex, image_size=(256, 256), batch_size: int = 16,
                 mask_shape: str = "box", shuffle: bool = False, seed: int = 0,
                 cache: bool = False, channel_order: str = "bgr", labels=None,
                 augment: bool = False):
    """A ``tf.data.Dataset`` of (image, mask) batches (:func:`base_dataset`, then
    :func:`epoch_batches`); with ``shuffle`` the order changes every iteration,
    deterministically from ``seed``. ``augment`` adds seeded random flips and 90-degree turns
    (off in the paper profile). The trainer uses the two parts directly, one pass per epoch.
    """
    import tensorflow as tf

    base = base_dataset(index, image_size, mask_shape, cache, channel_order, labels)
    ds = base
    if shuffle:
        ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
    if augment:
        ds = epoch_batches(ds, len(index), 1, augment_seed=seed * 1_000_003).unbatch()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def read_image_bgr(path: str | os.PathLike, image_size=None, channel_order: str = "bgr"):
    """Read an image for prediction as float32 (H, W, 3) in [0, 1], optionally resized."""
    import cv2

    from shared.images import read_image

    arr = read_image(path, mode="RGB")
    if channel_order == "bgr":
        arr = arr[..., ::-1]
    arr = arr.astype(np.float32)
    if image_size is not None:
        arr = cv2.resize(arr, (int(image_size[1]), int(image_size[0])),
                         interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(arr / 255.0, dtype=np.float32)
