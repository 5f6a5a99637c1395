"""SAM-Mix: paste a SAM object from a labelled image onto an unlabelled strong view.

Object masks come from one JSON file per image in SAM's automatic-mask-generator record
format (COCO RLE ``segmentation``, ``predicted_iou``, ``stability_score``, ``area``, ``bbox``),
sorted best first. Filtering (:func:`load_object_masks`): at most the first ``max_records``
records; keep those with ``predicted_iou >= min_iou`` and ``min_area <= area <= max_area``;
each mask is Gaussian-blurred (radius ``blur_radius``) and re-thresholded at 128/255.

Mixing (:func:`sam_mix`): per unlabelled image, one object of a random labelled image of the
batch is flipped horizontally with probability ``flip_prob`` (together with its image and
targets) and pasted. When the chosen object covers fewer than ``min_mask_px`` pixels of the crop
(or the labelled image has none) a CutMix box with area ratio ~ Beta(beta, beta) is used
instead. Inside the pasted region the target becomes the object image's ground truth where it
is labelled (confidence 1) and the teacher's prediction on the object image elsewhere.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch


class SamMaskError(ValueError):
    """A SAM mask JSON file is missing or malformed."""


def decode_record(rec: dict) -> np.ndarray:
    """A SAM record's ``segmentation`` (COCO RLE or a binary array) -> (H, W) uint8 0/1."""
    seg = rec["segmentation"]
    if isinstance(seg, dict):
        from pycocotools import mask as mask_utils

        rle = dict(seg)
        if isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
        return mask_utils.decode(rle).astype(np.uint8)
    return (np.asarray(seg) > 0).astype(np.uint8)


def blur_threshold(mask: np.ndarray, radius: int) -> np.ndarray:
    """Gaussian blur of a 0/1 mask (kernel 2*radius+1) re-thresholded at 128/255."""
    if radius <= 0:
        return mask.astype(np.uint8)
    k = 2 * int(radius) + 1
    blurred = cv2.GaussianBlur(mask.astype(np.uint8) * 255, (k, k), 0)
    return (blurred >= 128).astype(np.uint8)


def load_object_masks(path: str | os.PathLike, shape: tuple[int, int], min_iou: float = 0.97,
                      min_area: int = 1700, max_area: int = 512 * 512, max_records: int = 10,
                      blur_radius: int = 5) -> np.ndarray:
    """Filtered, blurred object masks of one image as (K, H, W) uint8 (K may be 0)."""
    path = Path(path)
    if not path.is_file():
        raise SamMaskError(f"{path}: SAM mask file not found (run `python -m "
                           "s5mars_ssl.sam_masks` on the image folder first)")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SamMaskError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(records, list):
        raise SamMaskError(f"{path}: expected a JSON list of SAM mask records")
    out = []
    for rec in records[:max_records]:
        try:
            iou, area = float(rec["predicted_iou"]), float(rec["area"])
        except (KeyError, TypeError, ValueError):
            raise SamMaskError(f"{path}: record without predicted_iou/area") from None
        if iou < min_iou or area < min_area or area > max_area:
            continue
        m = decode_record(rec)
        if m.shape != tuple(shape):
            raise SamMaskError(f"{path}: mask size {m.shape[1]}x{m.shape[0]} differs from the "
                               f"image size {shape[1]}x{shape[0]}")
        out.append(blur_threshold(m, blur_radius))
    if not out:
        return np.zeros((0, *shape), np.uint8)
    return np.stack(out)


def cutmix_box(h: int, w: int, beta: float = 4.0, generator: np.random.Generator | None = None
               ) -> np.ndarray:
    """A random box mask whose area ratio is 1 - lam, lam ~ Beta(beta, beta)."""
    rng = generator or np.random.default_rng()
    lam = rng.beta(beta, beta)
    cut = math.sqrt(1.0 - lam)
    bh, bw = max(1, int(h * cut)), max(1, int(w * cut))
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2 + 1, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2 + 1, w)
    box = np.zeros((h, w), np.uint8)
    box[y0:y1, x0:x1] = 1
    return box


@torch.no_grad()
def choose_paste_masks(objects: torch.Tensor, n_objects, n_target: int, min_mask_px: int = 100,
                       flip_prob: float = 0.5, beta: float = 4.0,
                       rng: np.random.Generator | None = None):
    """Pick, for each of ``n_target`` images, a source index, a (flipped) mask and a flip flag.

    ``objects``: (B_l, K, H, W) uint8 object masks of the labelled batch; ``n_objects``: number
    of valid masks per labelled image. Returns ``(src, masks (n_target, H, W) bool, flips,
    used_cutmix)``; the returned mask is already in the flipped frame when flipped.
    """
    rng = rng or np.random.default_rng()
    b_l, _, h, w = objects.shape
    n_objects = [int(n) for n in n_objects]
    src, masks, flips, fallback = [], [], [], []
    for _ in range(n_target):
        j = int(rng.integers(0, b_l))
        m = None
        if n_objects[j] > 0:
            k = int(rng.integers(0, n_objects[j]))
            cand = objects[j, k].bool()
            if int(cand.sum()) >= min_mask_px:
                m = cand
        used_box = m is None
        if used_box:
            m = torch.from_numpy(cutmix_box(h, w, beta, rng)).bool().to(objects.device)
        flip = bool(rng.random() < flip_prob)
        if flip:
            m = m.flip(-1)
        src.append(j)
        masks.append(m)
        flips.append(flip)
        fallback.append(used_box)
    return src, torch.stack(masks), flips, fallback


@torch.no_grad()
def sam_mix(strong_u: torch.Tensor, target_u: torch.Tensor, conf_u: torch.Tensor,
            prob_u: torch.Tensor, image_l: torch.Tensor, label_l: torch.Tensor,
            pred_l: torch.Tensor, conf_l: torch.Tensor, prob_l: torch.Tensor,
            src: list[int], masks: torch.Tensor, flips: list[bool], ignore_index: int = 255):
    """Paste the chosen objects; returns new (image, target, confidence, probabilities).

    ``target_u``/``conf_u``/``prob_u``: the unlabelled images' pseudo-labels, confidences and
    teacher distributions (B, C, H, W). ``label_l``: ground truth of the labelled images (255 =
    unlabelled); ``pred_l``/``conf_l``/``prob_l``: the teacher's prediction on them. Inside each
    mask the image comes from the (flipped) labelled image, the target is its ground truth
    where labelled (confidence 1, one-hot distribution) and the teacher's prediction elsewhere.
    """
    img, tgt = strong_u.clone(), target_u.clone()
    conf, prob = conf_u.clone(), prob_u.clone()
    n_cls = prob_u.shape[1]
    for i, (j, flip) in enumerate(zip(src, flips)):
        m = masks[i]
        o_img, o_lbl, o_pred = image_l[j], label_l[j], pred_l[j]
        o_conf, o_prob = conf_l[j], prob_l[j]
        if flip:
            o_img, o_lbl, o_pred = o_img.flip(-1), o_lbl.flip(-1), o_pred.flip(-1)
            o_conf, o_prob = o_conf.flip(-1), o_prob.flip(-1)
        labelled = o_lbl != ignore_index
        o_tgt = torch.where(labelled, o_lbl, o_pred)
        o_c = torch.where(labelled, torch.ones_like(o_conf), o_conf)
        onehot = torch.nn.functional.one_hot(o_lbl.clamp(max=n_cls - 1), n_cls)
        onehot = onehot.permute(2, 0, 1).to(o_prob.dtype)
        o_p = torch.where(labelled.unsqueeze(0), onehot, o_prob)
        img[i] = torch.where(m.unsqueeze(0), o_img, img[i])
        tgt[i] = torch.where(m, o_tgt, tgt[i])
        conf[i] = torch.where(m, o_c, conf[i])
        prob[i] = torch.where(m.unsqueeze(0), o_p, prob[i])
    return img, tgt, conf, prob
