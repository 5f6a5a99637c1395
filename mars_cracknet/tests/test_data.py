import shutil

import numpy as np
import pytest
from PIL import Image

from mars_cracknet.data.mars import CrackDataset, DatasetError, build_transform, load_mask


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _layout(root, n=2, size=32, lists=("mars_train",)):
    rng = np.random.default_rng(0)
    for i in range(n):
        _png(root / "imgs" / f"im{i}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        _png(root / "masks" / f"im{i}.png", (rng.random((size, size)) > 0.8).astype(np.uint8) * 255)
    (root / "lists").mkdir(parents=True, exist_ok=True)
    for name in lists:
        (root / "lists" / f"{name}.txt").write_text("\n".join(f"im{i}" for i in range(n)) + "\n")
    return root


def test_good_layout_loads(tmp_path):
    ds = CrackDataset.for_mode(_layout(tmp_path), "mars")
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and y.shape == (1, 32, 32)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}


def test_mask_of_ones_accepted(tmp_path):
    _png(tmp_path / "m.png", np.array([[0, 1], [1, 0]], np.uint8))
    assert load_mask(tmp_path / "m.png").sum() == 2


def test_non_binary_mask_names_file_and_values(tmp_path):
    root = _layout(tmp_path)
    _png(root / "masks" / "im1.png", np.full((32, 32), 37, np.uint8))
    with pytest.raises(DatasetError, match=r"im1\.png.*not binary.*37"):
        CrackDataset.for_mode(root, "mars")[1]


def test_image_without_mask(tmp_path):
    root = _layout(tmp_path)
    (root / "masks" / "im0.png").unlink()
    with pytest.raises(DatasetError, match=r"im0\.png: image has no mask"):
        CrackDataset.for_mode(root, "mars")


def test_size_mismatch(tmp_path):
    root = _layout(tmp_path)
    _png(root / "masks" / "im0.png", np.zeros((16, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"masks/im0\.png: mask size"):
        CrackDataset.for_mode(root, "mars")


def test_missing_list_entry(tmp_path):
    root = _layout(tmp_path)
    (root / "lists" / "mars_train.txt").write_text("im0\nghost\n")
    with pytest.raises(DatasetError, match=r"ghost\.png: image listed in .*mars_train\.txt"):
        CrackDataset.for_mode(root, "mars")


def test_empty_split_and_missing_list(tmp_path):
    root = _layout(tmp_path)
    (root / "lists" / "mars_train.txt").write_text("# nothing\n\n")
    with pytest.raises(DatasetError, match=r"mars_train\.txt: empty split"):
        CrackDataset.for_mode(root, "mars")
    with pytest.raises(DatasetError, match=r"earth\.txt: list file not found"):
        CrackDataset.for_mode(root, "earth")
    with pytest.raises(DatasetError, match="dataset folder not found"):
        CrackDataset.for_mode(tmp_path / "nope", "mars")


def test_unlabelled_mode_gives_image_targets(tmp_path):
    root = _layout(tmp_path, lists=("mars", "earth_unlabelled"))
    shutil.rmtree(root / "masks")
    ds = CrackDataset.for_mode(root, "semi", crop_size=32, train=True)
    x, y = ds[0]
    assert len(ds) == 4 and x.shape == y.shape == (3, 32, 32)
    assert (x == y).all()


def test_augmentation_keeps_image_and_mask_aligned():
    mask = np.zeros((96, 96), np.uint8)
    mask[8:40, 8:40] = 1
    mask[50:90, 60:80] = 1
    mask[20:28, 50:92] = 1
    image = np.repeat((mask * 255)[..., None], 3, axis=-1).astype(np.uint8)
    tf = build_transform(64, train=True, seed=0)
    moved = 0
    for k in range(12):
        tf.set_random_seed(k)
        out = tf(image=image, mask=mask)
        img, msk = out["image"], out["mask"]
        assert img.shape[:2] == msk.shape == (64, 64)
        agree = ((img[..., 0] > 128) == (msk > 0)).mean()
        assert agree > 0.97, f"sample {k}: image and mask agree on {agree:.3f} only"
        moved += int(not np.array_equal(msk, mask[:64, :64]))
    assert moved >= 10  # the transform really transforms


def test_per_sample_augmentation_is_reproducible(tiny_data):
    ds = CrackDataset.for_mode(tiny_data, "mars", crop_size=32, train=True, seed=3)
    ds.set_epoch(2)
    a = ds[1]
    ds.set_epoch(0)
    ds[1]
    ds.set_epoch(2)
    b = ds[1]
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
