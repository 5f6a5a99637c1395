"""SAM-Mix: paste a SAM object from a labelled image onto an unlabelled strong view, then a
CutMix box from another unlabelled strong image, as the original runs it.

Object masks come from one JSON file per image in SAM's automatic-mask-generator record
format (COCO RLE ``segmentation``, ``predicted_iou``, ``stability_score``, ``area``, ``bbox``),
sorted best first. Filtering (:func:`load_object_masks`, the original's record scan): each mask
is Gaussian-blurred (radius ``blur_radius``) and re-thresholded (``> 128`` of 255); its area is
measured on that blurred mask; a mask larger than ``max_area`` is skipped; the scan *stops* at
the first record whose blurred area is below ``min_area`` or whose ``predicted_iou`` is below
``min_iou``, or after ``max_records`` records (the original's ``i > 10``: 11).

Mixing (:func:`choose_paste_masks` + :func:`sam_mix`), per unlabelled image ``i`` with a random
permutation ``perm`` of the unlabelled batch: one object of labelled image ``perm[i] % B_l``
(flipped with probability ``flip_prob`` together with its image and targets) is pasted when it
covers at least ``min_mask_px`` pixels; then, always, a box (area ratio ``1 - lam``, ``lam ~
Beta(beta, beta)``, one ``lam`` per batch, centre at least H/8 and W/8 from the top/left border)
is copied from unlabelled strong image ``perm[i]`` (image, hard target, confidence and
teacher distribution; the original leaves the hard target of the box unchanged, a defect: its
``mix_label`` is 4-D and indexed with three indices; we write it). Inside the pasted object the
target is the object image's ground truth where it is labelled (confidence 1) and the teacher's
prediction on the object image elsewhere.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from shared.errors import UserError


class SamMaskError(UserError):
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


def blur_threshold(mask: np.ndarray, radius: float) -> np.ndarray:
    """The original's blur of a 0/1 mask: PIL ``ImageFilter.GaussianBlur(radius)`` of the mask
    at 0/255 (PIL's radius is the standard deviation, so sigma = 5 for the original's radius 5:
    thin parts vanish and the object shrinks), re-thresholded at ``> 128``."""
    if radius <= 0:
        return mask.astype(np.uint8)
    from PIL import Image, ImageFilter

    img = Image.fromarray(mask.astype(np.uint8) * 255)  # 2-D uint8: mode L
    blurred = np.asarray(img.filter(ImageFilter.GaussianBlur(radius=radius)))
    return (blurred > 128).astype(np.uint8)


def load_object_masks(path: str | os.PathLike, shape: tuple[int, int], min_iou: float = 0.97,
                      min_area: int = 1700, max_area: int = 512 * 512, max_records: int = 11,
                      blur_radius: int = 5) -> np.ndarray:
    """Filtered, blurred object masks of one image as (K, H, W) uint8 (K may be 0).

    The original's scan: in record order, blur and re-threshold the mask, skip it when its
    area exceeds ``max_area``, stop at the first record that fails ``area >= min_area`` or
    ``predicted_iou >= min_iou`` or lies beyond the first ``max_records``.
    """
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
    for i, rec in enumerate(records):
        try:
            iou = float(rec["predicted_iou"])
        except (KeyError, TypeError, ValueError):
            raise SamMaskError(f"{path}: record {i} without predicted_iou") from None
        m = decode_record(rec)
        if m.shape != tuple(shape):
            raise SamMaskError(f"{path}: mask size {m.shape[1]}x{m.shape[0]} differs from the "
                               f"image size {shape[1]}x{shape[0]}")
        m = blur_threshold(m, blur_radius)
        area = int(m.sum())
        if area > max_area:
            continue
        if area < min_area or iou < min_iou or i >= max_records:
            break
        out.append(m)
    if not out:
        return np.zeros((0, *shape), np.uint8)
    return np.stack(out)


def cutmix_boxes(n: int, h: int, w: int, beta: float = 4.0,
                 generator: np.random.Generator | None = None) -> np.ndarray:
    """``n`` box masks (n, H, W) as the original's ``rand_bbox``: one ``lam ~ Beta(beta,
    beta)`` for the batch, side ratio ``sqrt(1 - lam)``, centres uniform in ``[H/8, H) x
    [W/8, W)``, clipped to the image."""
    rng = generator or np.random.default_rng()
    lam = rng.beta(beta, beta)
    cut = math.sqrt(1.0 - lam)
    bh, bw = int(h * cut), int(w * cut)
    cy = rng.integers(int(h / 8), h, size=n)
    cx = rng.integers(int(w / 8), w, size=n)
    boxes = np.zeros((n, h, w), np.uint8)
    for k in range(n):
        y0, y1 = np.clip(cy[k] - bh // 2, 0, h), np.clip(cy[k] + bh // 2, 0, h)
        x0, x1 = np.clip(cx[k] - bw // 2, 0, w), np.clip(cx[k] + bw // 2, 0, w)
        boxes[k, y0:y1, x0:x1] = 1
    return boxes


@torch.no_grad()
def choose_paste_masks(objects: torch.Tensor, n_objects, n_target: int, min_mask_px: int = 100,
                       flip_prob: float = 0.5, beta: float = 4.0,
                       rng: np.random.Generator | None = None):
    """Pick, for each of ``n_target`` unlabelled images, the object and the box to paste.

    ``objects``: (B_l, K, H, W) uint8 object masks of the labelled batch; ``n_objects``: number
    of valid masks per labelled image. Returns a dict: ``src`` (labelled image per target),
    ``masks`` (n_target, H, W) bool, already in the flipped frame when flipped, all False when
    no object of ``min_mask_px`` pixels was available), ``flips``, ``no_object`` (bool per
    target), ``box_src`` (unlabelled image the box comes from) and ``boxes`` (n_target, H, W)
    bool.
    """
    rng = rng or np.random.default_rng()
    b_l, _, h, w = objects.shape
    n_objects = [int(n) for n in n_objects]
    perm = rng.permutation(n_target)
    boxes = torch.from_numpy(cutmix_boxes(n_target, h, w, beta, rng)).bool().to(objects.device)
    src, masks, flips, none = [], [], [], []
    for i in range(n_target):
        j = int(perm[i]) % b_l
        m = torch.zeros((h, w), dtype=torch.bool, device=objects.device)
        if n_objects[j] > 0:
            k = int(rng.integers(0, n_objects[j]))
            cand = objects[j, k].bool()
            if int(cand.sum()) >= min_mask_px:
                m = cand
        flip = bool(rng.random() < flip_prob)
        if flip:
            m = m.flip(-1)
        src.append(j)
        masks.append(m)
        flips.append(flip)
        none.append(not bool(m.any()))
    return {"src": src, "masks": torch.stack(masks), "flips": flips, "no_object": none,
            "box_src": [int(v) for v in perm], "boxes": boxes}


@torch.no_grad()
def sam_mix(strong_u: torch.Tensor, target_u: torch.Tensor, conf_u: torch.Tensor,
            prob_u: torch.Tensor, image_l: torch.Tensor, label_l: torch.Tensor,
            pred_l: torch.Tensor, conf_l: torch.Tensor, prob_l: torch.Tensor,
            src: list[int], masks: torch.Tensor, flips: list[bool], ignore_index: int = 255,
            boxes: torch.Tensor | None = None, box_src: list[int] | None = None):
    """Paste the chosen objects, then the boxes; returns new (image, target, confidence,
    probabilities).

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
    if boxes is not None:
        for i, b in enumerate(box_src):
            m = boxes[i]
            img[i] = torch.where(m.unsqueeze(0), strong_u[b], img[i])
            tgt[i] = torch.where(m, target_u[b], tgt[i])
            conf[i] = torch.where(m, conf_u[b], conf[i])
            prob[i] = torch.where(m.unsqueeze(0), prob_u[b], prob[i])
    return img, tgt, conf, prob
