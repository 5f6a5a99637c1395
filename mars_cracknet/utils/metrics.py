"""Per-image binary segmentation metrics (threshold 0.5), as the paper averages them."""

from __future__ import annotations

import numpy as np

METRICS = ("precision", "recall", "dice", "jaccard")


def confusion(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int]:
    """True positives, false positives, false negatives of two boolean masks."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and mask {target.shape} differ in shape")
    tp = int(np.count_nonzero(pred & target))
    fp = int(np.count_nonzero(pred & ~target))
    fn = int(np.count_nonzero(~pred & target))
    return tp, fp, fn


def scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, Dice, Jaccard with the original predict.py's edge cases.

    The original divides by ``denominator + 1e-10``, so a zero denominator gives 0: an empty
    prediction has precision 0, an empty mask recall 0, and an empty prediction of an empty
    mask Dice 0; its Jaccard ``(I + 1e-10) / (U - I + 1e-10)`` is 1 there.
    """
    def ratio(a: float, b: float, empty: float = 0.0) -> float:
        return empty if b == 0 else a / b

    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": ratio(tp, tp + fp + fn, empty=1.0),
    }


def image_scores(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return scores(*confusion(pred, target))
