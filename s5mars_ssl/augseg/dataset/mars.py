"""Datasets in the S5Mars layout.

``<root>/<image_dir>/<stem>.jpg`` (RGB), ``<root>/<label_dir>/<stem>.png`` (grayscale raw ids
0..9; 0 = unlabelled -> 255, 1..9 -> train ids 0..8), JSON sample lists (arrays of stems) and a
semi split file (one index into the training list per line = the labelled samples). Optional
``<root>/<sam_dir>/<stem>.json``: SAM automatic-mask-generator records for SAM-Mix.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from s5mars_ssl.augseg.dataset.augmentation import (
    TrainTransform,
    center_crop,
    normalize,
)
from s5mars_ssl.augseg.dataset.sam_mix import load_object_masks
from s5mars_ssl.constants import IGNORE_INDEX, NUM_CLASSES, raw_to_train
from shared.errors import UserError
from shared.images import ImageReadError, read_image, read_mask
from shared.runs import derive_seed


class DataError(UserError):
    """A dataset file is missing or inconsistent; the message names the file."""


def read_sample_list(path: str | os.PathLike) -> list[str]:
    """A JSON array of sample stems."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: sample list not found")
    try:
        stems = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(stems, list) or not all(isinstance(s, str) for s in stems):
        raise DataError(f"{path}: expected a JSON array of sample names")
    if not stems:
        raise DataError(f"{path}: the sample list is empty")
    return stems


def read_split(path: str | os.PathLike, n_samples: int) -> list[int]:
    """Indices (one per line) of the labelled samples; checked against the list length."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    idx = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            i = int(line)
        except ValueError:
            raise DataError(f"{path}:{lineno}: not an integer index: {line!r}") from None
        if not 0 <= i < n_samples:
            raise DataError(f"{path}:{lineno}: index {i} out of range 0..{n_samples - 1}")
        idx.append(i)
    if not idx:
        raise DataError(f"{path}: the split is empty (no labelled sample)")
    return sorted(set(idx))


def load_pair(root: Path, stem: str, image_dir: str = "images", label_dir: str = "labels",
              need_label: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB uint8 image and train-id label (or None when ``need_label`` is false)."""
    img_path = root / image_dir / f"{stem}.jpg"
    try:
        img = read_image(img_path, mode="RGB")
    except ImageReadError as exc:
        raise DataError(str(exc)) from None
    if not need_label:
        return img, None
    lbl_path = root / label_dir / f"{stem}.png"
    try:
        raw = read_mask(lbl_path, allowed=range(NUM_CLASSES + 1))
    except ImageReadError as exc:
        raise DataError(str(exc)) from None
    if raw.shape != img.shape[:2]:
        raise DataError(f"{lbl_path}: label size {raw.shape[1]}x{raw.shape[0]} differs from the "
                        f"image size {img.shape[1]}x{img.shape[0]} ({img_path.name})")
    return img, raw_to_train(raw)


class MarsDataset(Dataset):
    """Training (cropped, augmented) or evaluation (full image or centre crop) samples.

    ``mode``: ``"labeled"`` returns image, label, object masks (for SAM-Mix) and index;
    ``"unlabeled"`` returns the weak view and its label, which is all 255 unless the sample's
    position is in ``keep_labels`` (the labelled-split images of the unlabelled stream, as in
    the original loader); the label file of any other sample is never opened. ``"val"``
    returns the full normalised image and label (or its ``center_crop`` x ``center_crop``
    centre, the original's evaluation).

    Augmentation draws come from ``random.Random(derive_seed(seed, mode, epoch, position))``:
    call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, root: str | os.PathLike, stems: list[str], mode: str, cfg: dict,
                 keep_labels: set[int] | None = None, sam_filter: dict | None = None,
                 seed: int = 0, center_crop: int | None = None):
        if mode not in ("labeled", "unlabeled", "val"):
            raise ValueError(f"unknown dataset mode {mode!r}")
        self.root = Path(root)
        self.stems = list(stems)
        if not self.stems:
            raise DataError(f"{self.root}: no sample for the {mode} set")
        self.mode = mode
        self.cfg = cfg
        self.keep_labels = set(keep_labels or ())
        self.sam_filter = sam_filter
        self.seed, self.epoch = int(seed), 0
        self.center = center_crop
        self.image_dir = cfg.get("image_dir", "images")
        self.label_dir = cfg.get("label_dir", "labels")
        self.mean = np.asarray(cfg["mean"], np.float32)
        self.std = np.asarray(cfg["std"], np.float32)
        self.transform = TrainTransform(base_size=cfg["base_size"], crop_size=cfg["crop_size"],
                                        scale=tuple(cfg.get("scale", (0.5, 2.0))),
                                        flip=cfg.get("flip", True),
                                        resize=cfg.get("resize", "long_side"))
        for i, stem in enumerate(self.stems):  # fail early and clearly on a missing file
            p = self.root / self.image_dir / f"{stem}.jpg"
            if not p.is_file():
                raise DataError(f"{p}: image file not found")
            if self._has_label(i):
                q = self.root / self.label_dir / f"{stem}.png"
                if not q.is_file():
                    raise DataError(f"{q}: label file not found")

    def _has_label(self, i: int) -> bool:
        return self.mode != "unlabeled" or i in self.keep_labels

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, i: int):
        stem = self.stems[i]
        img, lbl = load_pair(self.root, stem, self.image_dir, self.label_dir, self._has_label(i))
        if lbl is None:
            lbl = np.full(img.shape[:2], IGNORE_INDEX, np.uint8)
        if self.mode == "val":
            if self.center:
                img, lbl = center_crop(img, lbl, int(self.center))
            return {"image": torch.from_numpy(normalize(img, self.mean, self.std)),
                    "label": torch.from_numpy(lbl.astype(np.int64)), "index": i}
        rng = random.Random(derive_seed(self.seed, self.mode, self.epoch, i))
        objects = None
        if self.mode == "labeled" and self.sam_filter is not None:
            sam_path = self.root / self.cfg.get("sam_dir", "sam_masks") / f"{stem}.json"
            objects = load_object_masks(sam_path, img.shape[:2], **self.sam_filter)
        img, lbl, objects, valid = self.transform(img, lbl, objects, rng)
        out = {"image": torch.from_numpy(normalize(img, self.mean, self.std)),
               "label": torch.from_numpy(lbl.astype(np.int64)), "index": i,
               "valid": torch.from_numpy(valid.astype(bool))}
        if self.sam_filter is not None and self.mode == "labeled":
            k = int(self.sam_filter.get("max_records", 11))
            h, w = lbl.shape
            stack = np.zeros((k, h, w), np.uint8)
            n = 0 if objects is None else min(k, len(objects))
            for j in range(n):
                stack[j] = objects[j]
            out["objects"] = torch.from_numpy(stack)
            out["n_objects"] = n
        return out


def image_stats(root: Path, stems: list[str], image_dir: str = "images"
                ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..1 scale) over the given images."""
    total = np.zeros(3)
    sq = np.zeros(3)
    n = 0
    for stem in stems:
        img, _ = load_pair(root, stem, image_dir, need_label=False)
        x = img.reshape(-1, 3).astype(np.float64) / 255.0
        total += x.sum(0)
        sq += (x ** 2).sum(0)
        n += len(x)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean ** 2, 1e-12))
    return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]


def resolve_normalization(cfg: dict) -> dict:
    """Replace ``dataset.mean/std: auto`` by the values measured on the training images."""
    d = cfg["dataset"]
    if d.get("mean") == "auto" or d.get("std") == "auto":
        root = Path(d["root"])
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder not found (generate it with "
                            "`python -m s5mars_ssl.data.synthetic` or point dataset.root at "
                            "S5Mars)")
        train = read_sample_list(root / d["train_list"])
        mean, std = image_stats(root, train, d.get("image_dir", "images"))
        d["mean"] = mean if d.get("mean") == "auto" else d["mean"]
        d["std"] = std if d.get("std") == "auto" else d["std"]
    return cfg


def build_datasets(cfg: dict, with_sam: bool, seed: int = 0
                   ) -> tuple[MarsDataset, MarsDataset, MarsDataset]:
    """Labelled, unlabelled and test datasets, as the original builds them.

    * labelled: the split's samples, repeated ``len(train) // len(split)`` times, so that an
      epoch has about ``len(train) / batch`` iterations (the epoch length comes from all
      training images);
    * unlabelled: *all* training samples; a sample keeps its (sparse) ground truth only when
      its index is in the labelled split, every other sample's label is all 255 and its label
      file is never read (so labels outside the split never reach any loss);
    * test: the test list.
    """
    d = cfg["dataset"]
    root = Path(d["root"])
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found (generate it with "
                        "`python -m s5mars_ssl.data.synthetic` or point dataset.root at S5Mars)")
    train = read_sample_list(root / d["train_list"])
    test = read_sample_list(root / d["test_list"])
    if d.get("split"):
        lab_idx = read_split(root / d["split"], len(train))
    else:
        lab_idx = list(range(len(train)))
    resolve_normalization(cfg)
    sam_filter = None
    if with_sam:
        sm = cfg["semi"]["sammix"]
        sam_filter = {k: sm[k] for k in ("min_iou", "min_area", "max_area", "max_records",
                                         "blur_radius")}
    repeat = max(1, len(train) // len(lab_idx))
    lab = MarsDataset(root, [train[i] for i in lab_idx] * repeat, "labeled", d,
                      sam_filter=sam_filter, seed=seed)
    unl = MarsDataset(root, train, "unlabeled", d, keep_labels=set(lab_idx), seed=seed)
    center = d.get("eval_crop") if d.get("eval_mode") == "center_crop" else None
    val = MarsDataset(root, test, "val", d, center_crop=center)
    return lab, unl, val
