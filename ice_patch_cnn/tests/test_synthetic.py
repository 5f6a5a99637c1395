"""Synthetic scenes: kinds, truth, patch labels, chunk truth, resumable generation."""

import csv

import numpy as np
import pytest

from ice_patch_cnn.data.synthetic import (
    chunk_truth,
    generate_scenes,
    kind_list,
    make_scene,
)


def test_scene_kinds_and_truth():
    good = make_scene(np.random.default_rng(0), 384, 384, "good")
    clean = make_scene(np.random.default_rng(0), 384, 384, "clean")
    assert good.image.dtype == np.uint8 and good.image.shape == (384, 384)
    assert good.meta["truth"] == "good" and good.meta["has_ice"]
    assert good.meta["n_patches"] > 0 and good.labels.max() > 0
    assert clean.meta["truth"] == "bad" and not clean.meta["has_ice"]
    assert clean.labels.max() == 0
    covered = make_scene(np.random.default_rng(1), 256, 256, "covered")
    assert covered.meta["truth"] == "bad" and covered.meta["has_ice"]
    # no-data border: black corners, and no valid pixel is 0
    assert (good.image[0, :5] == 0).any() or (good.image[-1, -5:] == 0).any()
    inside = good.image[150:230, 150:230]
    assert inside.min() > 0
    # patches are brighter than their surroundings on average
    patch = good.labels > 0
    assert good.image[patch].mean() > good.image[(~patch) & (good.image > 0)].mean() + 20
    with pytest.raises(ValueError):
        make_scene(np.random.default_rng(0), 64, 64, "lava")


def test_chunk_truth_from_patch_labels():
    labels = np.zeros((64, 64), np.uint16)
    labels[4:10, 4:10] = 1          # fully in chunk (0, 0)
    labels[20:24, 28:36] = 2        # split half/half between chunks (0, 0) and (0, 1)
    labels[40:50, 30:40] = 3        # 20 % in chunk (1, 0) (cols 30-31), 80 % in (1, 1)
    truth = chunk_truth(labels, 32)
    assert truth == {(0, 0): 1, (0, 1): 1, (1, 0): -1, (1, 1): 1}
    labels2 = np.zeros((64, 64), np.uint16)
    labels2[0:10, 31:41] = 1         # 10 % in chunk (0, 0): too little -> 0
    assert chunk_truth(labels2, 32)[0, 0] == 0


def test_kind_list_proportions():
    kinds = kind_list({"good": 0.5, "clean": 0.3, "covered": 0.2}, 10,
                      np.random.default_rng(0))
    assert sorted(kinds) == sorted(["good"] * 5 + ["clean"] * 3 + ["covered"] * 2)
    with pytest.raises(ValueError):
        kind_list({"lava": 1.0}, 3, np.random.default_rng(0))


def test_generate_scenes_is_resumable(tmp_path):
    rows = generate_scenes(tmp_path, 2, (160, 160), {"good": 1, "clean": 1}, seed=3,
                           progress=False)
    assert {r["kind"] for r in rows} == {"good", "clean"}
    first = (tmp_path / "SYN_0000.tif").stat().st_mtime_ns
    again = generate_scenes(tmp_path, 2, (160, 160), {"good": 1, "clean": 1}, seed=3,
                            progress=False)
    assert again == rows and (tmp_path / "SYN_0000.tif").stat().st_mtime_ns == first
    with open(tmp_path / "scenes.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2


def test_large_mosaic_is_written_block_by_block(tmp_path):
    from ice_patch_cnn.data.synthetic import write_large_scene
    from shared.rasters import open_scene

    path = write_large_scene(tmp_path / "big.tif", 300, 500, seed=1, tile=128, progress=False)
    with open_scene(path) as info:
        assert (info.height, info.width, info.count, info.dtype) == (300, 500, 1, "uint8")
    from shared.images import read_image

    img = read_image(path)
    assert img[0, 0] == 0 and img[150, 250] > 0     # black footprint corner, data inside
