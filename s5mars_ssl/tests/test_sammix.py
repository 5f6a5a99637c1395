import json

import numpy as np
import pytest
import torch

from s5mars_ssl.augseg.dataset.sam_mix import (
    SamMaskError,
    blur_threshold,
    choose_paste_masks,
    load_object_masks,
    sam_mix,
)
from s5mars_ssl.sam_masks import encode_rle

H = W = 12
C = 3


def _setup():
    g = torch.Generator().manual_seed(0)
    strong = torch.randn(2, 3, H, W, generator=g)
    tgt_u = torch.zeros(2, H, W, dtype=torch.long)
    conf_u = torch.full((2, H, W), 0.3)
    prob_u = torch.full((2, C, H, W), 1.0 / C)
    img_l = torch.randn(1, 3, H, W, generator=g) + 10
    label_l = torch.full((1, H, W), 255, dtype=torch.long)
    label_l[0, :, : W // 2] = 2  # left half labelled as class 2
    pred_l = torch.ones(1, H, W, dtype=torch.long)  # teacher says class 1 everywhere
    conf_l = torch.full((1, H, W), 0.6)
    prob_l = torch.zeros(1, C, H, W)
    prob_l[:, 1] = 0.6
    prob_l[:, 0] = 0.4
    mask = torch.zeros(2, H, W, dtype=torch.bool)
    mask[0, 2:8, 3:9] = True
    mask[1, 5:10, 1:4] = True
    return strong, tgt_u, conf_u, prob_u, img_l, label_l, pred_l, conf_l, prob_l, mask


def test_paste_only_inside_mask_and_target_rule():
    strong, tgt_u, conf_u, prob_u, img_l, label_l, pred_l, conf_l, prob_l, mask = _setup()
    img, tgt, conf, prob = sam_mix(strong, tgt_u, conf_u, prob_u, img_l, label_l, pred_l, conf_l,
                                   prob_l, src=[0, 0], masks=mask, flips=[False, False])
    m3 = mask.unsqueeze(1).expand_as(img)
    assert torch.equal(img[m3], img_l.expand(2, -1, -1, -1)[m3])
    assert torch.equal(img[~m3], strong[~m3])
    assert torch.equal(tgt[~mask], tgt_u[~mask]) and torch.equal(conf[~mask], conf_u[~mask])
    assert torch.equal(prob[~mask.unsqueeze(1).expand_as(prob)],
                       prob_u[~mask.unsqueeze(1).expand_as(prob)])
    labelled = (label_l != 255).expand(2, -1, -1)
    gt_in = mask & labelled
    teach_in = mask & ~labelled
    assert gt_in.any() and teach_in.any()
    assert (tgt[gt_in] == 2).all() and (conf[gt_in] == 1).all()  # GT wins, confidence 1
    assert (prob[:, 2][gt_in] == 1).all()
    assert (tgt[teach_in] == 1).all() and torch.allclose(conf[teach_in], torch.tensor(0.6))
    assert torch.allclose(prob[:, 1][teach_in], torch.tensor(0.6))


def test_flip_moves_the_object_with_its_targets():
    strong, tgt_u, conf_u, prob_u, img_l, label_l, pred_l, conf_l, prob_l, mask = _setup()
    img, tgt, conf, _ = sam_mix(strong, tgt_u, conf_u, prob_u, img_l, label_l, pred_l, conf_l,
                                prob_l, src=[0, 0], masks=mask, flips=[True, True])
    flipped = img_l[0].flip(-1)
    m3 = mask[0].unsqueeze(0).expand(3, -1, -1)
    assert torch.equal(img[0][m3], flipped[m3])
    labelled_flipped = (label_l[0] != 255).flip(-1)  # now the right half
    assert (tgt[0][mask[0] & labelled_flipped] == 2).all()
    assert (tgt[0][mask[0] & ~labelled_flipped] == 1).all()


def test_choose_masks_object_then_always_a_box():
    objects = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    objects[0, 0, 4:20, 4:20] = 1  # 256 px: usable
    objects[1, 0, 0:5, 0:5] = 1  # 25 px: below min_mask_px -> no object, the box only
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        ch = choose_paste_masks(objects, [1, 1], 2, min_mask_px=100, flip_prob=0.5, rng=rng)
        assert sorted(ch["box_src"]) == [0, 1]  # a permutation of the unlabelled batch
        for i in range(2):
            m, src, flip = ch["masks"][i], ch["src"][i], ch["flips"][i]
            assert src == ch["box_src"][i] % 2
            obj = objects[src, 0].bool()
            obj = obj.flip(-1) if flip else obj
            if src == 0:
                assert not ch["no_object"][i] and torch.equal(m, obj)
            else:
                assert ch["no_object"][i] and not m.any()
            b = ch["boxes"][i]
            ys, xs = torch.nonzero(b, as_tuple=True)  # a filled rectangle, always there
            assert b.any() and b[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()
            seen.add((src, flip))
    assert len(seen) >= 3


def test_box_from_another_unlabelled_image_writes_the_hard_label_too():
    strong, tgt_u, conf_u, prob_u, img_l, label_l, pred_l, conf_l, prob_l, mask = _setup()
    tgt_u[1] = 5
    conf_u[1] = 0.8
    boxes = torch.zeros(2, H, W, dtype=torch.bool)
    boxes[0, 0:4, 0:4] = True
    img, tgt, conf, prob = sam_mix(strong, tgt_u, conf_u, prob_u, img_l, label_l, pred_l, conf_l,
                                   prob_l, src=[0, 0], masks=mask, flips=[False, False],
                                   boxes=boxes, box_src=[1, 0])
    b3 = boxes[0].unsqueeze(0).expand(3, -1, -1)
    assert torch.equal(img[0][b3], strong[1][b3])
    assert (tgt[0][boxes[0]] == 5).all()  # the original leaves this out (a defect)
    assert torch.allclose(conf[0][boxes[0]], torch.tensor(0.8))


def _rec(mask, iou, area=None):
    return {"segmentation": encode_rle(mask), "area": int(area or mask.sum()),
            "predicted_iou": iou, "stability_score": 0.99, "bbox": [0, 0, 1, 1]}


def test_object_mask_filters(tmp_path):
    h, w = 40, 40
    big = np.zeros((h, w), np.uint8)
    big[5:35, 5:35] = 1
    small = np.zeros((h, w), np.uint8)
    small[0:3, 0:3] = 1
    huge = np.ones((h, w), np.uint8)
    path = tmp_path / "a.json"
    # the original's scan: a too large mask is skipped, the first failing record stops it
    recs = [_rec(big, 0.99), _rec(huge, 0.99), _rec(big, 0.98), _rec(big, 0.90),
            _rec(big, 0.99)]
    path.write_text(json.dumps(recs))
    out = load_object_masks(path, (h, w), min_iou=0.97, min_area=100, max_area=1000,
                            max_records=11, blur_radius=2)
    assert out.shape == (2, h, w)
    assert np.array_equal(out[0], blur_threshold(big, 2))
    # the area is measured on the blurred mask (the record's "area" field is not used)
    path.write_text(json.dumps([_rec(big, 0.99, area=10**6), _rec(small, 0.99),
                                _rec(big, 0.99)]))
    out = load_object_masks(path, (h, w), min_iou=0.97, min_area=20, max_area=1000,
                            max_records=11, blur_radius=2)
    assert out.shape == (1, h, w)  # small blurs away below min_area: the scan stops there
    path.write_text(json.dumps([_rec(big, 0.99)] * 16))
    out = load_object_masks(path, (h, w), min_iou=0.97, min_area=100, max_area=1000,
                            max_records=11, blur_radius=2)
    assert out.shape == (11, h, w)  # at most 11 records (the original's i > 10)
    with pytest.raises(SamMaskError, match="b.json"):
        load_object_masks(tmp_path / "b.json", (h, w))
    with pytest.raises(SamMaskError, match="size"):
        load_object_masks(path, (h + 1, w), min_area=100, max_area=5000)


def test_blur_rethreshold_rounds_corners():
    m = np.zeros((60, 60), np.uint8)
    m[15:45, 15:45] = 1
    b = blur_threshold(m, 5)
    assert b[30, 30] == 1 and b[0, 0] == 0
    assert b[15, 15] == 0  # the corner is rounded off by blur + re-threshold at 128/255


def test_blur_is_the_originals_sigma_5():
    """PIL's GaussianBlur(radius=5) has sigma 5: a 6-px line vanishes after the re-threshold at
    128 and a blob loses its rim (a kernel-size sigma of about 2 would keep both)."""
    m = np.zeros((80, 80), np.uint8)
    m[:, 37:43] = 1  # a 6-px-wide line
    assert blur_threshold(m, 5).sum() == 0
    blob = np.zeros((120, 120), np.uint8)
    yy, xx = np.mgrid[:120, :120]
    blob[(yy - 60) ** 2 + (xx - 60) ** 2 <= 40 ** 2] = 1
    blob[57:63, 100:120] = 1  # a 6-px arm sticking out of the disc
    b = blur_threshold(blob, 5)
    assert b[60, 60] == 1 and b[60, 110:].sum() == 0  # the disc stays, the arm is gone
