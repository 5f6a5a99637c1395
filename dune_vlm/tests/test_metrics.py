import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    jaccard_score,
)

from dune_vlm.utils.metrics import SegMetric


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    target = rng.integers(0, 10, size=(4, 50, 40))
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 10, target.shape))
    target[:, :5] = 255  # ignored pixels
    m = SegMetric(10)
    for p, t in zip(pred, target):  # accumulate over batches
        m.update(p, t)
    r = m.compute()
    keep = target != 255
    t, p = target[keep], pred[keep]
    labels = list(range(10))
    assert r["OA"] == pytest.approx(accuracy_score(t, p), abs=1e-12)
    assert np.allclose(r["IoU"], jaccard_score(t, p, labels=labels, average=None))
    assert r["mIoU"] == pytest.approx(jaccard_score(t, p, labels=labels, average="macro"))
    assert np.allclose(r["F1"], f1_score(t, p, labels=labels, average=None))
    assert r["mF1"] == pytest.approx(f1_score(t, p, labels=labels, average="macro"))
    assert r["kappa"] == pytest.approx(cohen_kappa_score(t, p), abs=1e-10)
    assert np.array_equal(r["confusion"], confusion_matrix(t, p, labels=labels))


def test_absent_class_is_left_out_of_the_mean():
    m = SegMetric(3)
    m.update(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    r = m.compute()
    assert np.isnan(r["IoU"][2])
    assert r["mIoU"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_bad_values_raise():
    m = SegMetric(3)
    with pytest.raises(ValueError, match="outside"):
        m.update(np.array([0]), np.array([7]))
    with pytest.raises(ValueError, match="outside"):
        m.update(np.array([5]), np.array([0]))
    with pytest.raises(ValueError, match="pixels"):
        m.update(np.zeros(3), np.zeros(4))


def test_reference_miou_counts_absent_classes_as_zero():
    # classes 0 and 1 present, 2..3 absent from truth and prediction
    t = np.array([0, 0, 1, 1])
    p = np.array([0, 1, 1, 1])
    m = SegMetric(4)
    m.update(p, t)
    r = m.compute()
    iou0, iou1 = 1 / 2, 2 / 3
    assert r["mIoU"] == pytest.approx((iou0 + iou1) / 2)  # ours: present classes only
    assert r["mIoU_ref"] == pytest.approx((iou0 + iou1) / 4)  # reference: absent count 0
    f0, f1 = 2 / 3, 4 / 5
    assert r["mF1_ref"] == pytest.approx((f0 + f1) / 4)
