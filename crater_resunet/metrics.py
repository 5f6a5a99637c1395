"""Metrics: the paper's soft (probability) versions, thresholded versions, and
crater-level scores from boxes (the loss is in ``losses.py``).

* Keras side (any backend, registered so saved models load in safe mode without
  ``custom_objects``): the notebook's soft ``dice_coefficient``, ``f1_score``,
  ``precision``, ``recall`` computed on probabilities;
  and :class:`ThresholdedScore` (dice/precision/recall/f1 from a mask thresholded at 0.5,
  accumulated over the whole epoch), which are the numbers we quote first.
* NumPy side, for evaluation: :func:`pixel_scores` and crater-level precision/recall/F1 by
  IoU matching of boxes (:func:`match_boxes`, :func:`crater_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

PACKAGE = "crater_resunet"
SMOOTH = 1.0
EPS = 1e-7


# ----------------------------------------------------------------------------- Keras: soft
@keras.saving.register_keras_serializable(package=PACKAGE)
def dice_coefficient(y_true, y_pred, smooth=SMOOTH):
    """Soft Dice on probabilities over the whole batch, smooth 1.

    Smooth 1 is the value of the notebook's *loss*; the notebook's Dice *metric* uses 1e-7.
    We use 1 for both on purpose, so that the reported Dice is the one the loss optimises
    (at a batch's pixel sums the two differ by less than 1e-3; see the README's differences
    table).
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    inter = ops.sum(y_true * y_pred)
    return (2.0 * inter + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)


@keras.saving.register_keras_serializable(package=PACKAGE)
def precision(y_true, y_pred):
    """Soft precision: sum(t*p) / sum(p), on probabilities (the paper's definition)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.sum(y_true * y_pred) / (ops.sum(y_pred) + EPS)


@keras.saving.register_keras_serializable(package=PACKAGE)
def recall(y_true, y_pred):
    """Soft recall: sum(t*p) / sum(t), on probabilities (the paper's definition)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.sum(y_true * y_pred) / (ops.sum(y_true) + EPS)


@keras.saving.register_keras_serializable(package=PACKAGE)
def f1_score(y_true, y_pred):
    """Soft F1 = 2PR / (P + R) from the soft precision and recall."""
    p = precision(y_true, y_pred)
    r = recall(y_true, y_pred)
    return 2.0 * p * r / (p + r + EPS)


# ------------------------------------------------------------------------ Keras: thresholded
@keras.saving.register_keras_serializable(package=PACKAGE)
class ThresholdedScore(keras.metrics.Metric):
    """Dice, precision, recall or F1 of ``y_pred >= threshold``, counted over a whole epoch.

    True/false positive and false negative pixels are summed over every batch, so the value is
    the score of the epoch's pixels, not a mean of per-batch scores.
    """

    KINDS = ("dice", "precision", "recall", "f1")

    def __init__(self, kind="dice", threshold=0.5, name=None, **kwargs):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        super().__init__(name=name or f"{kind}_t", **kwargs)
        self.kind = kind
        self.threshold = float(threshold)
        self.tp = self.add_variable(shape=(), initializer="zeros", name="tp")
        self.fp = self.add_variable(shape=(), initializer="zeros", name="fp")
        self.fn = self.add_variable(shape=(), initializer="zeros", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = ops.cast(ops.greater_equal(ops.cast(y_true, "float32"), 0.5), "float32")
        p = ops.cast(ops.greater_equal(ops.cast(y_pred, "float32"), self.threshold), "float32")
        self.tp.assign_add(ops.sum(t * p))
        self.fp.assign_add(ops.sum((1.0 - t) * p))
        self.fn.assign_add(ops.sum(t * (1.0 - p)))

    def result(self):
        tp, fp, fn = self.tp, self.fp, self.fn
        if self.kind == "precision":
            return tp / (tp + fp + EPS)
        if self.kind == "recall":
            return tp / (tp + fn + EPS)
        # Dice and F1 of binary masks are the same number: 2TP / (2TP + FP + FN)
        return 2.0 * tp / (2.0 * tp + fp + fn + EPS)

    def reset_state(self):
        for v in (self.tp, self.fp, self.fn):
            v.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "threshold": self.threshold}


def keras_metrics(threshold: float = 0.5) -> list:
    """The compile-time metric list: accuracy, thresholded scores, then the paper's soft ones."""
    return [
        keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold),
        *(ThresholdedScore(k, threshold) for k in ThresholdedScore.KINDS),
        dice_coefficient, f1_score, precision, recall,
    ]


# ---------------------------------------------------------------------------- NumPy: pixels
def confusion(y_true: np.ndarray, y_pred: np.ndarray, threshold: float = 0.5) -> dict:
    """Pixel TP/FP/FN/TN of ``y_pred >= threshold`` against a binary ``y_true``."""
    t = np.asarray(y_true) >= 0.5
    p = np.asarray(y_pred) >= threshold
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: truth {t.shape} vs prediction {p.shape}")
    return {"tp": int(np.sum(t & p)), "fp": int(np.sum(~t & p)), "fn": int(np.sum(t & ~p)),
            "tn": int(np.sum(~t & ~p))}


def scores_from_confusion(c: dict) -> dict:
    """Accuracy, precision, recall, dice (= F1) and IoU from pixel counts."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    total = tp + fp + fn + tn
    return {
        "accuracy": (tp + tn) / total if total else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
    }


def soft_scores(y_true: np.ndarray, prob: np.ndarray, smooth: float = SMOOTH) -> dict:
    """The paper's soft dice/precision/recall/F1 over all given pixels (NumPy)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    inter = float(np.sum(t * p))
    prec = inter / (float(np.sum(p)) + EPS)
    rec = inter / (float(np.sum(t)) + EPS)
    return {
        "dice_soft": (2 * inter + smooth) / (float(np.sum(t)) + float(np.sum(p)) + smooth),
        "precision_soft": prec, "recall_soft": rec,
        "f1_soft": 2 * prec * rec / (prec + rec + EPS),
    }


def pixel_scores(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict:
    """Thresholded and soft pixel scores of one image or a stack."""
    return {**scores_from_confusion(confusion(y_true, prob, threshold)),
            **soft_scores(y_true, prob)}


# ----------------------------------------------------------------------- NumPy: craters
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes given as (x1, y1, x2, y2), shapes (N, 4) and (M, 4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_boxes(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5,
                scores: Sequence[float] | None = None) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching: predictions in order of confidence (else as given), each
    to the unmatched true box of highest IoU, kept when IoU >= ``iou_threshold``.

    Returns (pred index, truth index, IoU) for every match.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    if len(pred) == 0 or len(truth) == 0:
        return []
    iou = box_iou(pred, truth)
    order = np.argsort(-np.asarray(scores), kind="stable") if scores is not None \
        else np.arange(len(pred))
    taken = np.zeros(len(truth), dtype=bool)
    matches = []
    for i in order:
        cand = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            taken[j] = True
            matches.append((int(i), j, float(cand[j])))
    return matches


def crater_counts(pred: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5,
                  scores: Sequence[float] | None = None) -> dict:
    """TP / FP / FN craters of one image."""
    n_pred = len(np.asarray(pred).reshape(-1, 4))
    n_true = len(np.asarray(truth).reshape(-1, 4))
    tp = len(match_boxes(pred, truth, iou_threshold, scores))
    return {"tp": tp, "fp": n_pred - tp, "fn": n_true - tp}


def crater_scores(counts: dict) -> dict:
    """Crater-level precision, recall and F1 from summed TP/FP/FN."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"crater_precision": p, "crater_recall": r, "crater_f1": f1,
            "crater_tp": tp, "crater_fp": fp, "crater_fn": fn}
