import json

import numpy as np
import pytest
from PIL import Image

from s5mars_ssl.augseg.dataset.mars import (
    DataError,
    MarsDataset,
    build_datasets,
    load_pair,
    read_sample_list,
    read_split,
)
from s5mars_ssl.constants import colorize, raw_to_train, train_to_raw


def test_label_id_mapping():
    raw = np.array([[0, 1, 2], [5, 9, 0]], np.uint8)
    train = raw_to_train(raw)
    assert train.tolist() == [[255, 0, 1], [4, 8, 255]]
    assert np.array_equal(train_to_raw(train), raw)
    with pytest.raises(ValueError, match="10"):
        raw_to_train(np.array([[10]]))
    assert colorize(train).shape == (2, 3, 3)


def test_synthetic_layout(tiny_dataset):
    root = tiny_dataset
    train = json.loads((root / "train.json").read_text())
    test = json.loads((root / "test.json").read_text())
    assert len(train) == 6 and len(test) == 2
    split = read_split(root / "splits" / "labeled_1_3.txt", len(train))
    assert len(split) == 2
    img, lbl = load_pair(root, train[0])
    assert img.shape == (64, 80, 3) and img.dtype == np.uint8
    raw = np.array(Image.open(root / "labels" / f"{train[0]}.png"))
    assert raw.max() <= 9 and (raw == 0).any()  # sparse: NULL pixels exist
    assert 0.02 < (raw == 0).mean() < 0.8
    meta = json.loads((root / "meta.json").read_text())
    assert meta["params"]["width"] == 80
    assert len(list((root / "sam_masks").glob("*.json"))) == 8


def test_build_datasets_and_items(tiny_dataset):
    cfg = {"dataset": {"root": str(tiny_dataset), "train_list": "train.json",
                       "test_list": "test.json", "split": "splits/labeled_1_3.txt",
                       "mean": "auto", "std": "auto", "base_size": 80, "crop_size": 48,
                       "scale": [0.5, 1.5]},
           "semi": {"sammix": {"min_iou": 0.0, "min_area": 20, "max_area": 10**6,
                               "max_records": 4, "blur_radius": 1}}}
    lab, unl, val = build_datasets(cfg, with_sam=True)
    # labelled split repeated to the training-set length; unlabelled = all training images
    assert len(lab) == 6 and len(unl) == 6 and len(val) == 2
    assert len(cfg["dataset"]["mean"]) == 3  # "auto" resolved from the images
    item = lab[0]
    assert item["image"].shape == (3, 48, 48) and item["label"].shape == (48, 48)
    assert item["objects"].shape == (4, 48, 48) and item["valid"].dtype.is_floating_point is False
    split = set(read_split(tiny_dataset / "splits" / "labeled_1_3.txt", 6))
    for i in range(6):  # only images of the labelled split keep labels in the unlabelled stream
        assert (unl[i]["label"] == 255).all() != (i in split)
    v = val[0]
    assert v["image"].shape == (3, 64, 80)


def _write(root, stems, sizes=None, raw_value=1):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for s in stems:
        h, w = (sizes or {}).get(s, (16, 16))
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "images" / f"{s}.jpg")
        Image.fromarray(np.full((h, w), raw_value, np.uint8)).save(root / "labels" / f"{s}.png")


def test_bad_inputs_name_the_file(tmp_path):
    cfg = {"mean": [0.5] * 3, "std": [0.2] * 3, "base_size": 16, "crop_size": 16}
    _write(tmp_path, ["a", "b"], sizes={"b": (8, 16)})
    with pytest.raises(DataError, match="b.png.*differs"):
        load_pair(tmp_path, "b")
    with pytest.raises(DataError, match="c.jpg"):
        MarsDataset(tmp_path, ["a", "c"], "val", cfg)
    Image.fromarray(np.full((16, 16), 12, np.uint8)).save(tmp_path / "labels" / "a.png")
    with pytest.raises(DataError, match=r"a.png.*12"):
        load_pair(tmp_path, "a")
    (tmp_path / "split.txt").write_text("0\n5\n")
    with pytest.raises(DataError, match=r"split.txt:2.*out of range"):
        read_split(tmp_path / "split.txt", 2)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="empty.txt.*empty"):
        read_split(tmp_path / "empty.txt", 2)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(DataError, match="list.json.*empty"):
        read_sample_list(tmp_path / "list.json")
    with pytest.raises(DataError, match="nope.json"):
        read_sample_list(tmp_path / "nope.json")
