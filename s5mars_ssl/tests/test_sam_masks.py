import json
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from s5mars_ssl.sam_masks import encode_rle, propose, region_quality, run

KEYS = {"segmentation", "area", "bbox", "predicted_iou", "stability_score", "point_coords",
        "crop_box"}


def _scene():
    rng = np.random.default_rng(0)
    img = np.full((48, 64, 3), 150, np.uint8)
    img[10:30, 12:32] = (60, 40, 30)  # a dark square object
    img[32:44, 40:60] = (220, 200, 160)  # a light patch
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def test_rle_round_trip():
    m = np.zeros((20, 30), np.uint8)
    m[3:9, 4:20] = 1
    rle = encode_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [20, 30]
    back = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(back, m)


def test_proposer_json_round_trip_through_pycocotools(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    from PIL import Image

    Image.fromarray(_scene()).save(img_dir / "s1.png")
    files = run(img_dir, tmp_path / "masks", progress=False)
    recs = json.loads(files[0].read_text())
    assert recs and all(set(r) >= KEYS for r in recs)
    ious = [r["predicted_iou"] for r in recs]
    assert ious == sorted(ious, reverse=True)  # best first
    for r in recs:
        rle = {"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()}
        m = mask_utils.decode(rle)
        assert m.shape == (48, 64)
        assert int(m.sum()) == r["area"] == int(mask_utils.area(rle))
        assert np.allclose(mask_utils.toBbox(rle), r["bbox"])
        assert 0 <= r["predicted_iou"] <= 1 and 0 <= r["stability_score"] <= 1
    # the clean square is found and scores high
    best = mask_utils.decode({"size": recs[0]["segmentation"]["size"],
                              "counts": recs[0]["segmentation"]["counts"].encode()})
    square = np.zeros((48, 64), bool)
    square[10:30, 12:32] = True
    ious_sq = [(mask_utils.decode({"size": r["segmentation"]["size"],
                                   "counts": r["segmentation"]["counts"].encode()}).astype(bool)
                & square).sum() / square.sum() for r in recs]
    assert max(ious_sq) > 0.7  # one region covers most of the square
    assert best.any()


def test_region_quality_prefers_clean_regions():
    img = _scene()
    good = np.zeros((48, 64), bool)
    good[10:30, 12:32] = True
    bad = np.zeros((48, 64), bool)
    bad[5:25, 20:40] = True  # straddles the object and the background
    q_good, s_good = region_quality(img, good)
    q_bad, _ = region_quality(img, bad)
    assert q_good > 0.9 > q_bad
    assert abs(s_good - 18 * 18 / (22 * 22)) < 1e-6  # |eroded| / |dilated|


def test_cli_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "s5mars_ssl.sam_masks", "--images",
                          str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "nope: image folder not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_propose_rejects_unknown_method():
    with pytest.raises(ValueError, match="proposer"):
        propose(_scene(), "watershed")


@pytest.mark.slow
def test_real_sam_code_path_with_random_weights(tmp_path):
    """segment-anything's ViT-B built locally with random weights, run end to end (~90M params)."""
    import torch
    from PIL import Image

    torch.manual_seed(0)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    Image.fromarray(_scene()).save(img_dir / "tiny.png")
    files = run(img_dir, tmp_path / "sam", random_weights=True, model_type="vit_b",
                points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                progress=False)
    recs = json.loads(files[0].read_text())
    assert isinstance(recs, list) and recs  # thresholds 0: random-weight SAM still emits masks
    for r in recs:
        assert set(r) >= KEYS
        m = mask_utils.decode({"size": r["segmentation"]["size"],
                               "counts": r["segmentation"]["counts"].encode()})
        assert m.shape == (48, 64) and int(m.sum()) == r["area"]
    ious = [r["predicted_iou"] for r in recs]
    assert ious == sorted(ious, reverse=True)
    from s5mars_ssl.augseg.dataset.sam_mix import load_object_masks

    objs = load_object_masks(files[0], (48, 64), min_iou=-1e9, min_area=0, max_area=10**9)
    assert objs.shape[0] == min(10, len(recs))


def test_sam_checkpoint_is_never_unpickled(tmp_path):
    """The SAM checkpoint is read with weights_only=True by us: a pickle that runs code is
    refused with a named error and nothing runs, even with torch's unsafe default forced."""
    import os
    import pickle
    from pathlib import Path

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "sam_evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"w": Evil()}, fh)
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img_dir / "a.jpg")
    out = subprocess.run([sys.executable, "-m", "s5mars_ssl.sam_masks", "--images",
                          str(img_dir), "--out", str(tmp_path / "o"), "--checkpoint", str(evil)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "sam_evil.pth: not a readable SAM checkpoint" in out.stderr
    assert not marker.exists() and "Traceback" not in out.stderr


def test_rerun_with_another_proposer_is_refused(tmp_path):
    """Audit case S13: a re-run with other settings must not keep the old masks silently."""
    import numpy as np
    from PIL import Image

    from shared.errors import UserError

    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
        tmp_path / "images" / "a.jpg")
    out = tmp_path / "sam"
    run(tmp_path / "images", out, proposer="felzenszwalb", progress=False)
    with pytest.raises(UserError, match="holds masks made with other settings"):
        run(tmp_path / "images", out, proposer="slic", progress=False)
    assert run(tmp_path / "images", out, proposer="slic", overwrite=True, progress=False)
