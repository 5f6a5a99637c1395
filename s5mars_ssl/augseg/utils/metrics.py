"""Confusion-matrix IoU (ignore 255) and whole-image / centre-crop / sliding-window evaluation.

Two means are reported: ``miou`` over the classes present in the prediction or the ground truth
(ours), and ``miou_all`` over all classes with absent ones counted as IoU 0 (the original's
``intersection / (union + 1e-10)``). ``center_crop`` is the original's evaluation: one forward
pass on the 1024 x 1024 centre of each test image (the crop is made by the dataset).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EVAL_MODES = ("whole", "center_crop", "sliding")


class IoUMeter:
    """Accumulates a confusion matrix; ``result()`` gives per-class IoU and mIoU."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.n = num_classes
        self.ignore = ignore_index
        self.cm = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred, target) -> None:
        pred = np.asarray(pred.cpu() if torch.is_tensor(pred) else pred).ravel().astype(np.int64)
        target = np.asarray(target.cpu() if torch.is_tensor(target) else target)
        target = target.ravel().astype(np.int64)
        valid = (target != self.ignore) & (target >= 0) & (target < self.n)
        idx = target[valid] * self.n + pred[valid]
        self.cm += np.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def result(self) -> dict:
        tp = np.diag(self.cm).astype(np.float64)
        union = self.cm.sum(0) + self.cm.sum(1) - tp
        iou = np.full(self.n, np.nan)
        present = union > 0
        iou[present] = tp[present] / union[present]
        gt_pixels = self.cm.sum(1)
        acc = tp.sum() / max(self.cm.sum(), 1)
        return {"miou": float(np.nanmean(iou)) if present.any() else float("nan"),
                # the original's mean: I / (U + 1e-10) over every class, absent classes 0
                "miou_all": float(np.mean(tp / (union + 1e-10))),
                "iou": [None if np.isnan(v) else float(v) for v in iou],
                "pixel_acc": float(acc), "gt_pixels": gt_pixels.tolist()}


@torch.no_grad()
def predict_whole(model, image: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities (B, C, H, W) of a whole-image forward pass."""
    return F.softmax(model(image).float(), dim=1)


# The original's sliding-window rule: a plain average of the overlapping windows' softmax.
SLIDING_BLEND = "constant"


@torch.no_grad()
def predict_sliding(model, image: torch.Tensor, crop: int, stride: int,
                    num_classes: int, batch_size: int = 4,
                    blend: str = SLIDING_BLEND) -> torch.Tensor:
    """Softmax of overlapping ``crop`` windows (every ``stride`` px) blended over the image by
    the project's engine (:func:`shared.engine.predict_array`), on ``image``'s device.

    Images smaller than one window are zero-padded (the model sees the padding, the output
    does not), as the original did. ``blend`` defaults to the original's plain average."""
    from shared.engine import predict_array

    dev = image.device

    def predict_fn(x: np.ndarray) -> np.ndarray:
        logits = model(torch.from_numpy(x).to(dev))
        return F.softmax(logits.float(), dim=1).cpu().numpy()

    out = [predict_array(img, predict_fn, crop, stride=stride, edge="shift", blend=blend,
                         batch_size=batch_size)
           for img in image.float().cpu().numpy()]
    prob = torch.from_numpy(np.stack(out)).to(dev)
    if prob.shape[1] != num_classes:
        raise ValueError(f"the model gave {prob.shape[1]} classes, expected {num_classes}")
    return prob


@torch.no_grad()
def evaluate(model, loader, num_classes: int, device, mode: str = "whole", crop: int = 512,
             stride: int = 384, progress: bool = False) -> dict:
    """mIoU and per-class IoU of ``model`` over ``loader`` (batches of image/label)."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    meter = IoUMeter(num_classes)
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        img = batch["image"].to(device)
        if mode == "sliding":
            prob = predict_sliding(model, img, crop, stride, num_classes)
        elif mode in ("whole", "center_crop"):
            prob = predict_whole(model, img)
        else:
            raise ValueError(f"evaluation mode must be one of {EVAL_MODES}, got {mode!r}")
        meter.update(prob.argmax(1), batch["label"])
    model.train(was_training)
    return meter.result()
