import numpy as np
import pytest

from dune_vlm.tests.conftest import write_tile
from dune_vlm.utils.dataset import DatasetError, DuneDataset, augment_pair


def good(root, stem="a", split="train", bands=64, size=32, label_value=1):
    write_tile(root, split, stem, np.zeros((bands, size, size), np.float32),
               np.full((size, size), label_value, np.uint8))


def test_reads_a_valid_split(tmp_path):
    good(tmp_path, "a")
    good(tmp_path, "b", label_value=255)
    ds = DuneDataset(tmp_path, "train")
    img, lab, idx = ds[1]
    assert img.shape == (64, 32, 32) and img.dtype == np.float32
    assert lab.dtype == np.int64 and set(np.unique(lab)) == {255}
    assert len(ds) == 2 and ds.regions is None


def test_wrong_band_count(tmp_path):
    good(tmp_path, "a", bands=3)
    with pytest.raises(DatasetError, match=r"a\.npy: expected 64 bands, got 3"):
        DuneDataset(tmp_path, "train")


def test_wrong_shape(tmp_path):
    (tmp_path / "img_dir/train").mkdir(parents=True)
    good(tmp_path, "b")
    np.save(tmp_path / "img_dir/train/b.npy", np.zeros((32, 32), np.float32))
    with pytest.raises(DatasetError, match=r"b\.npy: expected shape"):
        DuneDataset(tmp_path, "train")


def test_nan_values(tmp_path):
    img = np.zeros((64, 32, 32), np.float32)
    img[3, 4, 5] = np.nan
    write_tile(tmp_path, "train", "n", img, np.zeros((32, 32), np.uint8))
    ds = DuneDataset(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"n\.npy: 1 NaN/Inf"):
        ds[0]


def test_label_out_of_range(tmp_path):
    good(tmp_path, "x", label_value=12)
    with pytest.raises(DatasetError, match=r"x\.png: unexpected label values 12"):
        DuneDataset(tmp_path, "train")[0]


def test_size_mismatch(tmp_path):
    write_tile(tmp_path, "train", "m", np.zeros((64, 32, 32), np.float32),
               np.zeros((32, 16), np.uint8))
    with pytest.raises(DatasetError, match=r"m\.png: label size 32x16 does not match"):
        DuneDataset(tmp_path, "train")


def test_empty_split_and_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        DuneDataset(tmp_path, "val")
    (tmp_path / "img_dir/val").mkdir(parents=True)
    (tmp_path / "ann_dir/val").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty split 'val'"):
        DuneDataset(tmp_path, "val")
    np.save(tmp_path / "img_dir/val/lonely.npy", np.zeros((64, 32, 32), np.float32))
    with pytest.raises(DatasetError, match=r"lonely\.png.*label PNG missing for"):
        DuneDataset(tmp_path, "val")  # a tile without its label is an error, not dropped


def test_augmentation_keeps_image_and_label_aligned():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 10, size=(16, 16))
    img = np.stack([lab.astype(np.float32)] * 3)
    seen = set()
    for s in range(40):
        a, b = augment_pair(img, lab, np.random.default_rng(s))
        assert np.array_equal(a[0], b) and np.array_equal(a[2], b)
        seen.add(a[0].tobytes())
    assert len(seen) == 8  # all flip/rotation combinations of the dihedral group occur


def test_augmentation_is_reproducible_per_epoch(tmp_path):
    write_tile(tmp_path, "train", "t", np.random.default_rng(1).normal(
        size=(64, 32, 32)).astype(np.float32), np.arange(32 * 32).reshape(32, 32) % 10)
    ds = DuneDataset(tmp_path, "train", augment=True, seed=5)
    ds.set_epoch(3)
    a = ds[0][1]
    ds.set_epoch(3)
    assert np.array_equal(a, ds[0][1])
