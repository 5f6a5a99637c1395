"""Crack datasets in the original Mars-CrackNet layout.

::

    root/imgs/<stem>.png          RGB (grayscale is repeated to 3 channels)
    root/masks/<stem>.png         crack = 255 (or 1), background = 0
    root/lists/mars_train.txt     labelled MIC crops                  (modes mars, earth_mars)
    root/lists/earth.txt          labelled EDC images                 (modes earth, earth_mars)
    root/lists/mars.txt           unlabelled Mars images              (mode semi, pre-training)
    root/lists/earth_unlabelled.txt  unlabelled Earth images          (mode semi, pre-training)
    root/lists/mars_test.txt      MIC test images (full size)

One stem per line; blank lines and ``#`` comments are ignored. Images are scaled to [0, 1]
(pixel / 255, no ImageNet statistics). Every problem (missing list, empty split, image without
its mask, size mismatch, non-binary mask) is a :class:`DatasetError` naming the path.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from shared.errors import UserError
from shared.images import ImageReadError, read_image, read_mask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# Which list files each training mode reads, and whether they carry masks.
MODE_LISTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "mars": (("mars_train",), True),
    "earth": (("earth",), True),
    "earth_mars": (("mars_train", "earth"), True),
    # auto-encoder pre-training data (``pretrain_data``): the original code's (labelled MIC
    # crops used as images), the paper's wording (unlabelled EDC images), or all unlabelled
    "ae_mars_train": (("mars_train",), False),
    "ae_earth_unlabelled": (("earth_unlabelled",), False),
    "ae_unlabelled": (("earth_unlabelled", "mars"), False),
    "semi": (("earth_unlabelled", "mars"), False),
    "test": (("mars_test",), True),
}


class DatasetError(UserError):
    """A dataset file or list is missing or inconsistent; the message names the path."""


def read_list(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: list file not found")
    stems = [ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    stems = [s for s in stems if s]
    if not stems:
        raise DatasetError(f"{path}: empty split (no image names in the list)")
    return stems


def find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except Exception as exc:  # noqa: BLE001 - any decoder error becomes a named error
        raise DatasetError(f"{path}: not a readable image ({exc})") from None


def load_image(path: Path) -> np.ndarray:
    try:
        return read_image(path, mode="RGB")
    except ImageReadError as exc:
        raise DatasetError(str(exc)) from None


def load_mask(path: Path) -> np.ndarray:
    """Binary mask (H, W) uint8 in {0, 1}; values other than {0, 255} or {0, 1} are an error."""
    try:
        raw = read_mask(path)
    except ImageReadError as exc:
        raise DatasetError(str(exc)) from None
    values = np.unique(raw)
    present = {int(v) for v in values}
    if not (present <= {0, 255} or present <= {0, 1}):
        shown = ", ".join(str(v) for v in sorted(present)[:10])
        raise DatasetError(f"{path}: mask is not binary (crack = 255 or 1, background = 0); "
                           f"found values {shown}")
    return (raw > 0).astype(np.uint8)


INTERPOLATIONS = {"lanczos": 4, "linear": 1, "nearest": 0, "cubic": 2}  # cv2.INTER_*


def build_transform(crop_size: int | None, train: bool, seed: int | None = None,
                    interpolation: str = "lanczos"):
    """The paper's augmentation (albumentations), or ``None`` for evaluation.

    Horizontal flip p=0.9, brightness/contrast p=0.5, shift-scale-rotate (shift 0.0625, scale
    0.2, rotate 20 deg, constant border, p=0.7, Lanczos interpolation as the original's
    ``interpolation=4``), random crop ``crop_size``.
    """
    if not train:
        return None
    import albumentations as A
    import cv2

    transforms = [
        A.HorizontalFlip(p=0.9),
        A.RandomBrightnessContrast(p=0.5),
        A.Affine(translate_percent=(-0.0625, 0.0625), scale=(0.8, 1.2), rotate=(-20, 20),
                 interpolation=INTERPOLATIONS[interpolation],
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.7),
    ]
    if crop_size:
        transforms += [A.PadIfNeeded(crop_size, crop_size, border_mode=cv2.BORDER_CONSTANT,
                                     fill=0, fill_mask=0),
                       A.RandomCrop(crop_size, crop_size)]
    return A.Compose(transforms, seed=seed)


class CrackDataset(Dataset):
    """Images (and masks) of one or more list files.

    ``labelled=False`` gives auto-encoder pairs (image, image). ``exclude`` / ``only`` map a
    list name to the stems to leave out of it / to keep of it (the validation split).
    Augmentation is re-seeded per sample from ``(seed, epoch, index)`` (call
    :meth:`set_epoch`), so a resumed run and any number of data-loader workers or ranks
    see exactly the same crops.
    """

    def __init__(self, root: str | Path, lists: Sequence[str], labelled: bool = True,
                 crop_size: int | None = None, train: bool = False, seed: int = 0,
                 interpolation: str = "lanczos",
                 exclude: Mapping[str, Collection[str]] | None = None,
                 only: Mapping[str, Collection[str]] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found")
        self.labelled = labelled
        self.seed = seed
        self.epoch = 0
        self.items: list[tuple[str, Path, Path | None]] = []
        for name in lists:
            list_path = self.root / "lists" / f"{name}.txt"
            for stem in read_list(list_path):
                if exclude and stem in exclude.get(name, ()):
                    continue
                if only is not None and name in only and stem not in only[name]:
                    continue
                img = find_image(self.root / "imgs", stem)
                if img is None:
                    raise DatasetError(f"{self.root / 'imgs' / stem}.png: image listed in "
                                       f"{list_path} not found")
                mask = None
                if labelled:
                    mask = find_image(self.root / "masks", stem)
                    if mask is None:
                        raise DatasetError(f"{img}: image has no mask "
                                           f"({self.root / 'masks' / stem}.png not found)")
                    if image_size(img) != image_size(mask):
                        raise DatasetError(f"{mask}: mask size {image_size(mask)} differs from "
                                           f"image size {image_size(img)} of {img}")
                self.items.append((stem, img, mask))
        if not self.items:
            raise DatasetError(f"{self.root}: empty split for lists {list(lists)}")
        self.transform = build_transform(crop_size, train, seed, interpolation)

    @classmethod
    def for_mode(cls, root: str | Path, mode: str, **kwargs) -> CrackDataset:
        if mode not in MODE_LISTS:
            raise DatasetError(f"unknown mode {mode!r}; expected one of {sorted(MODE_LISTS)}")
        lists, labelled = MODE_LISTS[mode]
        return cls(root, lists, labelled=labelled, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        _, img_path, mask_path = self.items[index]
        image = load_image(img_path)
        mask = load_mask(mask_path) if mask_path is not None else None
        if mask is not None and mask.shape != image.shape[:2]:
            raise DatasetError(f"{mask_path}: mask size {mask.shape} differs from image size "
                               f"{image.shape[:2]} of {img_path}")
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transform is not None:
            key = f"{self.seed}:{self.epoch}:{index}".encode()
            self.transform.set_random_seed(zlib.crc32(key))
            if mask is None:
                image = self.transform(image=image)["image"]
            else:
                out = self.transform(image=image, mask=mask)
                image, mask = out["image"], out["mask"]
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 255.0
        if mask is None:
            return x, x.clone()
        y = torch.from_numpy(np.array(mask, copy=True)).float()[None]
        return x, y
