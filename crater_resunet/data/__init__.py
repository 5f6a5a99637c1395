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

from shared.errors import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
MASK_SHAPES = ("box", "ellipse")
SPLITS = ("train", "valid")
ROUNDING_TOLERANCE = 1e-6  # YOLO values this far outside [0, 1] are rounding: clipped, warned
MIN_SEMI_AXIS = 0.75  # px: every ellipse covers at least its centre pixel
_PAD = np.array([-1.0e4, -1.0e4, -1.0e4 + 1.0, -1.0e4 + 1.0], dtype=np.float32)


class LabelWarning(UserWarning):
    """A label value repaired on reading (a coordinate a rounding error outside [0, 1])."""


class LabelError(UserError):
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
        raise UserError(f"{img_dir}: image folder not found (expected the YOLO layout "
                        "<root>/{train,valid}/{images,labels})")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not images:
        raise UserError(f"{img_dir}: no images ({', '.join(IMAGE_EXTS)})")
    stems = {p.stem for p in images}
    if len(stems) != len(images):
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

    from shared.errors import UserError

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


# Augmentation that carries across bodies and instruments (the quick profile; the paper has
# none): the keys of ``data.augmentation``, each off when null or absent.
AUGMENTATION_KEYS = ("scale", "rotate", "brightness", "contrast", "gamma", "blur")


def check_augmentation(aug: dict | None) -> dict:
    """The ``data.augmentation`` mapping, checked: ``scale: [lo, hi]`` zoom factors (log-
    uniform; > 1 zooms in), ``rotate: true`` (any angle; reflected borders), ``brightness: b``
    (added offset in [-b, b]), ``contrast: [lo, hi]`` and ``gamma: [lo, hi]`` (log-uniform
    factors), ``blur: sigma`` (Gaussian blur of up to ``sigma`` px on half the samples)."""
    aug = dict(aug or {})
    unknown = sorted(set(aug) - set(AUGMENTATION_KEYS))
    if unknown:
        raise ValueError(f"data.augmentation: unknown key(s) {', '.join(unknown)}; "
                         f"expected {', '.join(AUGMENTATION_KEYS)}")
    for key in ("scale", "contrast", "gamma"):
        v = aug.get(key)
        if v is not None and not (isinstance(v, (list, tuple)) and len(v) == 2
                                  and 0 < float(v[0]) <= float(v[1]) < 100):
            raise ValueError(f"data.augmentation.{key} must be [lo, hi] with 0 < lo <= hi, "
                             f"got {v!r}")
    for key in ("brightness", "blur"):
        v = aug.get(key)
        if v is not None and not (isinstance(v, (int, float)) and 0 <= float(v) < 100):
            raise ValueError(f"data.augmentation.{key} must be a number >= 0, got {v!r}")
    if aug.get("rotate") not in (None, True, False):
        raise ValueError(f"data.augmentation.rotate must be true or false, got "
                         f"{aug.get('rotate')!r}")
    return aug


def _log_uniform(tf, lo_hi, seed):
    lo, hi = (float(v) for v in lo_hi)
    u = tf.random.stateless_uniform((), seed, 0.0, 1.0)
    return tf.exp(tf.math.log(lo) + u * (tf.math.log(hi) - tf.math.log(lo)))


def _affine(tf, both, angle, zoom):
    """Rotate by ``angle`` (radians) and zoom by ``zoom`` about the centre; reflected edges;
    bilinear for every channel (the mask channel is re-thresholded by the caller)."""
    h = tf.cast(tf.shape(both)[0], tf.float32)
    w = tf.cast(tf.shape(both)[1], tf.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    c, s = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2)
    a2 = cx - c * cx + s * cy
    b2 = cy - s * cx - c * cy
    transform = tf.stack([c, -s, a2, s, c, b2, 0.0, 0.0])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=both[None], transforms=transform, output_shape=tf.shape(both)[:2],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    return out[0]


def _blur(tf, img, sigma):
    """Separable Gaussian blur of (H, W, 3) with a 9-tap kernel of std ``sigma``."""
    r = tf.range(-4.0, 5.0)
    k = tf.exp(-0.5 * tf.square(r / tf.maximum(sigma, 1e-3)))
    k = k / tf.reduce_sum(k)
    x = tf.pad(img[None], [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT")
    kx = tf.tile(tf.reshape(k, (1, 9, 1, 1)), (1, 1, 3, 1))
    ky = tf.tile(tf.reshape(k, (9, 1, 1, 1)), (1, 1, 3, 1))
    x = tf.nn.depthwise_conv2d(x, kx, [1, 1, 1, 1], "VALID")
    x = tf.nn.depthwise_conv2d(x, ky, [1, 1, 1, 1], "VALID")
    return x[0]


def augment_pair(img, mask, seed, aug: dict | None = None):
    """One seeded augmentation of an (image, mask) pair (TensorFlow, stateless): a random
    flip and 90-degree turn, then the ``data.augmentation`` ops (see
    :func:`check_augmentation`). The same ``seed`` gives the same result."""
    import math

    import tensorflow as tf

    aug = check_augmentation(aug)
    both = tf.concat([img, mask], axis=-1)
    both = tf.image.stateless_random_flip_left_right(both, seed)
    k = tf.random.stateless_uniform((), seed + 1, 0, 4, dtype=tf.int32)
    both = tf.image.rot90(both, k)
    if aug.get("rotate") or aug.get("scale"):
        angle = (tf.random.stateless_uniform((), seed + 2, -math.pi / 4, math.pi / 4)
                 if aug.get("rotate") else tf.constant(0.0))
        zoom = _log_uniform(tf, aug["scale"], seed + 3) if aug.get("scale") else \
            tf.constant(1.0)
        both = _affine(tf, both, angle, zoom)
    img, mask = both[..., :3], tf.cast(both[..., 3:] >= 0.5, tf.float32)
    if aug.get("blur"):
        sigma = tf.random.stateless_uniform((), seed + 4, 0.3, float(aug["blur"]) + 0.3)
        on = tf.random.stateless_uniform((), seed + 5) < 0.5
        img = tf.cond(on, lambda: _blur(tf, img, sigma), lambda: img)
    if aug.get("gamma"):
        img = tf.pow(tf.clip_by_value(img, 0.0, 1.0), _log_uniform(tf, aug["gamma"], seed + 6))
    if aug.get("contrast"):
        mean = tf.reduce_mean(img)
        img = (img - mean) * _log_uniform(tf, aug["contrast"], seed + 7) + mean
    if aug.get("brightness"):
        b = float(aug["brightness"])
        img = img + tf.random.stateless_uniform((), seed + 8, -b, b)
    return tf.clip_by_value(img, 0.0, 1.0), mask


def epoch_batches(base, n: int, batch_size: int, shuffle_seed: int | None = None,
                  augment_seed: int | None = None, augmentation: dict | None = None):
    """Batches of one pass over ``base`` (``n`` elements): shuffled with ``shuffle_seed`` and
    augmented from ``augment_seed`` when given (seeded random flips and 90-degree turns, plus
    the ``augmentation`` ops of :func:`augment_pair`).

    A trainer passes seeds derived from (run seed, epoch), so epoch ``k`` draws the same order
    and augmentation whether the run was interrupted before it or not.
    """
    import tensorflow as tf

    ds = base
    if shuffle_seed is not None:
        ds = ds.shuffle(n, seed=int(shuffle_seed), reshuffle_each_iteration=False)
    if augment_seed is not None:
        aug = check_augmentation(augmentation)
        start = int(augment_seed) % (2**30)
        counter = tf.data.Dataset.counter(start).map(lambda c: tf.stack([c, c + 7]))
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda pair, s: augment_pair(pair[0], pair[1], tf.cast(s, tf.int32), aug),
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
