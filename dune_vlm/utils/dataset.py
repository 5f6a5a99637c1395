"""Tile dataset: ``img_dir/{split}/<stem>.npy`` (bands, H, W) + ``ann_dir/{split}/<stem>.png``.

Every problem names the offending file: wrong band count or shape, NaN/Inf values, label values
outside ``0..C-1`` and the ignore value, image/label size mismatch, an empty split. Shapes are
checked when the dataset is built (``.npy`` headers only); values when a sample is read.
An optional ``<root>/regions.json`` (``{stem: region}``, written by ``prepare_tiles.py``) lets
evaluation report metrics per region.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from shared.errors import UserError
from shared.images import ImageReadError, read_mask

SPLITS = ("train", "val", "test")


class DatasetError(UserError):
    """A dataset file or folder is missing or holds something the model cannot use."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {reason}")


def augment_pair(image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
    """Random horizontal flip, vertical flip (p=0.5 each) and rot90 by k in 0..3, both alike."""
    if rng.random() < 0.5:
        image, label = image[:, :, ::-1], label[:, ::-1]
    if rng.random() < 0.5:
        image, label = image[:, ::-1, :], label[::-1, :]
    k = int(rng.integers(0, 4))
    if k:
        image, label = np.rot90(image, k, axes=(1, 2)), np.rot90(label, k, axes=(0, 1))
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


class DuneDataset:
    """Pairs of 64-band embedding tiles and label PNGs for one split.

    ``augment=True`` applies :func:`augment_pair` with a generator derived from
    ``(seed, epoch, index)`` (call :meth:`set_epoch`), so a resumed run sees the same samples.
    Items are ``(image float32 (C, H, W), label int64 (H, W), index)`` as numpy arrays.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", num_classes: int = 10,
                 in_chans: int = 64, ignore_index: int = 255, augment: bool = False,
                 seed: int = 0):
        self.root = Path(root)
        self.split = split
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.ignore_index = ignore_index
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        img_dir = self.root / "img_dir" / split
        ann_dir = self.root / "ann_dir" / split
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise DatasetError(d, f"folder not found (expected the {split!r} split under "
                                      f"{self.root}/img_dir and ann_dir)")
        stems = sorted(p.stem for p in img_dir.glob("*.npy"))
        missing = [s for s in stems if not (ann_dir / f"{s}.png").is_file()]
        if missing:  # a tile without its label is an error, never silently dropped
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DatasetError(ann_dir / f"{missing[0]}.png",
                               f"label PNG missing for {img_dir / missing[0]}.npy{more}")
        if not stems:
            raise DatasetError(img_dir, f"empty split {split!r}: no <stem>.npy with a matching "
                                        f"{ann_dir}/<stem>.png")
        self.stems = stems
        self.images = [img_dir / f"{s}.npy" for s in stems]
        self.labels = [ann_dir / f"{s}.png" for s in stems]
        self.shapes = [self._check_header(p, q) for p, q in zip(self.images, self.labels)]
        self.regions = self._load_regions()

    def _check_header(self, img_path: Path, ann_path: Path) -> tuple[int, int]:
        try:
            arr = np.load(img_path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DatasetError(img_path, f"not a readable .npy array ({exc})") from None
        if arr.ndim != 3:
            raise DatasetError(img_path, f"expected shape ({self.in_chans}, H, W), got "
                                         f"{arr.shape}")
        if arr.shape[0] != self.in_chans:
            raise DatasetError(img_path, f"expected {self.in_chans} bands, got {arr.shape[0]} "
                                         f"(shape {arr.shape})")
        if arr.dtype.kind not in "fiu":
            raise DatasetError(img_path, f"expected a numeric array, got dtype {arr.dtype}")
        try:
            with Image.open(ann_path) as im:
                w, h = im.size
        except OSError as exc:
            raise DatasetError(ann_path, f"not a readable label image ({exc})") from None
        if (h, w) != tuple(arr.shape[1:]):
            raise DatasetError(ann_path, f"label size {h}x{w} does not match image {img_path.name}"
                                         f" size {arr.shape[1]}x{arr.shape[2]}")
        return h, w

    def _load_regions(self) -> list[str] | None:
        path = self.root / "regions.json"
        if not path.is_file():
            return None
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(path, f"not valid JSON ({exc})") from None
        return [str(mapping.get(s, "unknown")) for s in self.stems]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.stems)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, ann_path = self.images[index], self.labels[index]
        try:
            image = np.load(img_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DatasetError(img_path, f"not a readable .npy array ({exc})") from None
        image = np.asarray(image, dtype=np.float32)
        if not np.isfinite(image).all():
            bad = int((~np.isfinite(image)).sum())
            raise DatasetError(img_path, f"{bad} NaN/Inf values (fill nodata before tiling)")
        allowed = [*range(self.num_classes), self.ignore_index]
        try:
            label = read_mask(ann_path, allowed=allowed)
        except ImageReadError as exc:
            raise DatasetError(ann_path, exc.reason) from None
        if label.shape != image.shape[1:]:
            raise DatasetError(ann_path, f"label size {label.shape} does not match image "
                                         f"{image.shape[1:]}")
        return image, label.astype(np.int64)

    def __getitem__(self, index: int):
        image, label = self.load(index)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, label = augment_pair(image, label, rng)
        return image, label, index
