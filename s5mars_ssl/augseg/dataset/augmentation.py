"""Geometric training transforms (random resize, crop, flip) applied jointly to image, label
and SAM object masks, plus normalisation and the evaluation centre crop.

Every random draw comes from the ``rng`` (a ``random.Random``) handed to the transform, so a
sample's augmentation is a function of (seed, epoch, position) and a resumed run draws exactly
what an uninterrupted one draws.
"""

from __future__ import annotations

import random

import cv2
import numpy as np

from s5mars_ssl.constants import IGNORE_INDEX


def normalize(img: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W): (x/255 - mean) / std."""
    x = img.astype(np.float32) / 255.0
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


RESIZE_MODES = ("long_side", "square")


def center_crop(img: np.ndarray, lbl: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The central ``size`` x ``size`` window (padded with 0 / 255 where the image is smaller),
    the original's evaluation input."""
    h, w = lbl.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        img = np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        lbl = np.pad(lbl, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)),
                     constant_values=IGNORE_INDEX)
        h, w = lbl.shape
    y, x = (h - size) // 2, (w - size) // 2
    return (np.ascontiguousarray(img[y:y + size, x:x + size]),
            np.ascontiguousarray(lbl[y:y + size, x:x + size]))


class TrainTransform:
    """Random resize by s uniform in ``scale``, pad to the crop size (image 0, label 255, masks
    0), take a random ``crop_size`` crop, flip horizontally (p=0.5).

    ``resize``: ``"square"`` (the original: the image is squashed to ``base_size * s`` on both
    sides, aspect ratio not kept) or ``"long_side"`` (the long side becomes ``base_size * s``,
    aspect kept).
    """

    def __init__(self, base_size: int, crop_size: int, scale=(0.5, 2.0), flip: bool = True,
                 resize: str = "long_side"):
        if resize not in RESIZE_MODES:
            raise ValueError(f"dataset.resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.base_size = int(base_size)
        self.crop = int(crop_size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.flip = flip
        self.resize = resize

    def __call__(self, img: np.ndarray, lbl: np.ndarray, objects: np.ndarray | None = None,
                 rng: random.Random | None = None):
        """Returns ``(img, lbl, objects, valid)``; ``valid`` is 0 on padding, 1 elsewhere."""
        rng = rng or random.Random()
        h, w = lbl.shape
        s = rng.uniform(*self.scale)
        if self.resize == "square":
            nh = nw = max(1, int(self.base_size * s))
        else:
            f = self.base_size * s / max(h, w)
            nh, nw = max(1, round(h * f)), max(1, round(w * f))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        lbl = cv2.resize(lbl, (nw, nh), interpolation=cv2.INTER_NEAREST)
        if objects is not None and len(objects):
            objects = np.stack([cv2.resize(o, (nw, nh), interpolation=cv2.INTER_NEAREST)
                                for o in objects])
        valid = np.ones((nh, nw), np.uint8)
        ph, pw = max(self.crop - nh, 0), max(self.crop - nw, 0)
        if ph or pw:
            valid = np.pad(valid, ((0, ph), (0, pw)))
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
            lbl = np.pad(lbl, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
            if objects is not None and len(objects):
                objects = np.pad(objects, ((0, 0), (0, ph), (0, pw)))
        hh, ww = lbl.shape
        y = rng.randint(0, hh - self.crop)
        x = rng.randint(0, ww - self.crop)
        sl = (slice(y, y + self.crop), slice(x, x + self.crop))
        img, lbl, valid = img[sl], lbl[sl], valid[sl]
        if objects is not None and len(objects):
            objects = objects[:, sl[0], sl[1]]
        if self.flip and rng.random() < 0.5:
            img, lbl, valid = img[:, ::-1], lbl[:, ::-1], valid[:, ::-1]
            if objects is not None and len(objects):
                objects = objects[:, :, ::-1]
        if objects is not None:
            objects = np.ascontiguousarray(objects)
        return (np.ascontiguousarray(img), np.ascontiguousarray(lbl), objects,
                np.ascontiguousarray(valid))
