"""Confusion-matrix segmentation metrics: OA, IoU, mIoU, F1, mF1 and Cohen's kappa."""

from __future__ import annotations

import numpy as np


class SegMetric:
    """Accumulate a confusion matrix over batches; pixels equal to ``ignore_index`` are skipped.

    ``update(pred, target)`` takes integer arrays or tensors of the same shape (class indexes).
    ``compute()`` returns a dict with ``OA``, ``IoU`` (per class), ``mIoU``, ``F1`` (per class),
    ``mF1``, ``kappa`` and ``confusion`` (rows = truth, columns = prediction). Classes that never
    occur in truth or prediction get NaN IoU/F1 and are left out of the means (ours).
    ``mIoU_ref``/``mF1_ref`` are the reference code's definitions: the mean over *all* classes,
    an absent class counting 0 (its ``TP / (TP + FP + FN + 1e-10)``); the reference keeps the
    epoch with the best ``mIoU_ref`` and reports it.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.confusion[:] = 0

    def update(self, pred, target) -> None:
        pred = _to_numpy(pred).astype(np.int64, copy=False).ravel()
        target = _to_numpy(target).astype(np.int64, copy=False).ravel()
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.size} pixels but target has {target.size}")
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        n = self.num_classes
        bad_t = (target < 0) | (target >= n)
        if bad_t.any():
            raise ValueError(f"target values {np.unique(target[bad_t])[:10].tolist()} outside "
                             f"0..{n - 1} (and ignore_index {self.ignore_index})")
        bad_p = (pred < 0) | (pred >= n)
        if bad_p.any():
            raise ValueError(f"prediction values {np.unique(pred[bad_p])[:10].tolist()} outside "
                             f"0..{n - 1}")
        self.confusion += np.bincount(target * n + pred, minlength=n * n).reshape(n, n)

    def merge(self, confusion: np.ndarray) -> None:
        """Add another confusion matrix (e.g. reduced from other ranks)."""
        self.confusion += np.asarray(confusion, dtype=np.int64)

    def compute(self) -> dict:
        return metrics_from_confusion(self.confusion)


def metrics_from_confusion(cm: np.ndarray) -> dict:
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    oa = float(tp.sum() / total) if total else float("nan")
    if total:
        pe = float((cm.sum(axis=0) * cm.sum(axis=1)).sum() / total**2)
        kappa = (oa - pe) / (1 - pe) if pe < 1 else (1.0 if oa == 1 else 0.0)
    else:
        kappa = float("nan")
    present = ~np.isnan(iou)
    iou_ref = np.nan_to_num(iou, nan=0.0)
    f1_ref = np.nan_to_num(f1, nan=0.0)
    return {
        "OA": oa,
        "mIoU": float(iou[present].mean()) if present.any() else float("nan"),
        "mF1": float(f1[present].mean()) if present.any() else float("nan"),
        "mIoU_ref": float(iou_ref.mean()) if total else float("nan"),
        "mF1_ref": float(f1_ref.mean()) if total else float("nan"),
        "kappa": float(kappa),
        "IoU": iou.tolist(),
        "F1": f1.tolist(),
        "support": cm.sum(axis=1).astype(np.int64).tolist(),
        "pixels": int(total),
        "confusion": cm.astype(np.int64).tolist(),
    }


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)
