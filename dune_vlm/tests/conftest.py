import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _threads():
    import torch

    torch.set_num_threads(2)
    yield


def write_tile(root, split, stem, image, label):
    (root / "img_dir" / split).mkdir(parents=True, exist_ok=True)
    (root / "ann_dir" / split).mkdir(parents=True, exist_ok=True)
    np.save(root / "img_dir" / split / f"{stem}.npy", image)
    Image.fromarray(label.astype(np.uint8)).save(root / "ann_dir" / split / f"{stem}.png")


def make_separable_dataset(root, n=(6, 2, 2), size=64, bands=64, classes=10, seed=0):
    """Tiles whose pixels are noisy class prototypes in blocky class maps."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(classes, bands)).astype(np.float32)
    for split, count in zip(("train", "val", "test"), n):
        for i in range(count):
            lab = rng.integers(0, classes, size=(size // 16, size // 16))
            lab = np.kron(lab, np.ones((16, 16), dtype=np.int64))
            img = protos[lab].transpose(2, 0, 1) + 0.3 * rng.normal(size=(bands, size, size))
            img = img / np.linalg.norm(img, axis=0, keepdims=True)
            write_tile(root, split, f"r{i % 2}_{split}_{i}", img.astype(np.float32), lab)
    return root
