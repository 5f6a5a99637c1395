"""Loss and metrics against hand computation; crater-level matching."""

import numpy as np
import pytest

from crater_resunet import metrics as M

T = np.array([[1, 1, 0, 0]], np.float32).reshape(1, 2, 2, 1)
P = np.array([[0.9, 0.4, 0.6, 0.0]], np.float32).reshape(1, 2, 2, 1)


def test_soft_metrics_by_hand():
    inter = 0.9 + 0.4
    assert float(M.dice_coefficient(T, P)) == pytest.approx((2 * inter + 1) / (2 + 1.9 + 1),
                                                           rel=1e-5)
    assert float(M.precision(T, P)) == pytest.approx(inter / 1.9, rel=1e-5)
    assert float(M.recall(T, P)) == pytest.approx(inter / 2, rel=1e-5)
    p, r = inter / 1.9, inter / 2
    assert float(M.f1_score(T, P)) == pytest.approx(2 * p * r / (p + r), rel=1e-5)
    bce = -np.mean([np.log(0.9), np.log(0.4), np.log(0.4), np.log(1 - 1e-7)])
    loss = 0.5 * bce + 0.5 * (1 - (2 * inter + 1) / (2 + 1.9 + 1))
    from crater_resunet.losses import bce_dice_loss

    assert float(bce_dice_loss(T, P)) == pytest.approx(loss, rel=1e-4)


def test_thresholded_metrics_accumulate_over_batches():
    # batch 1: thresholded P = [1, 0, 1, 0] vs T = [1, 1, 0, 0] -> tp 1, fp 1, fn 1
    # batch 2: all four predicted, two true -> tp 2, fp 2, fn 0 ; total tp 3 fp 3 fn 1
    t2 = np.array([1, 0, 1, 0], np.float32).reshape(1, 2, 2, 1)
    p2 = np.full((1, 2, 2, 1), 0.8, np.float32)
    want = {"dice": 6 / (6 + 3 + 1), "f1": 6 / 10, "precision": 3 / 6, "recall": 3 / 4}
    for kind, value in want.items():
        m = M.ThresholdedScore(kind)
        m.update_state(T, P)
        m.update_state(t2, p2)
        assert float(m.result()) == pytest.approx(value, rel=1e-5)
        m.reset_state()
        assert float(m.result()) == 0.0
    with pytest.raises(ValueError):
        M.ThresholdedScore("iou")


def test_pixel_scores_numpy():
    s = M.pixel_scores(T, P)
    assert s["accuracy"] == 0.5 and s["precision"] == 0.5 and s["recall"] == 0.5
    assert s["dice"] == 0.5 and s["iou"] == pytest.approx(1 / 3)
    assert s["dice_soft"] == pytest.approx(float(M.dice_coefficient(T, P)), rel=1e-5)


def test_box_matching_by_hand():
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], float)
    pred = np.array([[0, 0, 10, 8],      # IoU 0.8 with truth 0
                     [21, 21, 31, 31],   # IoU 81/119 = 0.68 with truth 1
                     [0, 0, 10, 10],     # duplicate of truth 0: a false positive
                     [50, 50, 55, 55]])  # IoU 0.25 with truth 2: below 0.5
    iou = M.box_iou(pred, truth)
    assert iou[0, 0] == pytest.approx(0.8) and iou[1, 1] == pytest.approx(81 / 119)
    matches = M.match_boxes(pred, truth, 0.5, scores=[0.9, 0.8, 0.7, 0.6])
    assert [(i, j) for i, j, _ in matches] == [(0, 0), (1, 1)]
    c = M.crater_counts(pred, truth, 0.5, [0.9, 0.8, 0.7, 0.6])
    assert c == {"tp": 2, "fp": 2, "fn": 1}
    s = M.crater_scores(c)
    assert s["crater_precision"] == 0.5 and s["crater_recall"] == pytest.approx(2 / 3)
    assert s["crater_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # the more confident duplicate wins the match
    matches = M.match_boxes(pred, truth, 0.5, scores=[0.1, 0.8, 0.9, 0.6])
    assert (2, 0) in [(i, j) for i, j, _ in matches]
    assert M.crater_counts(np.zeros((0, 4)), truth) == {"tp": 0, "fp": 0, "fn": 3}
    assert M.crater_scores({"tp": 0, "fp": 0, "fn": 0})["crater_f1"] == 0.0
