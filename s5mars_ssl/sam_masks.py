"""Object masks for SAM-Mix: one JSON per image in SAM's automatic-mask-generator format.

Each record: ``segmentation`` (COCO RLE, ``{"size": [h, w], "counts": str}``), ``area``,
``bbox`` (x, y, w, h), ``predicted_iou``, ``stability_score``, ``point_coords``, ``crop_box``;
the list is sorted best first (by ``predicted_iou``). SAM-Mix reads only these fields.

Two producers, one format:

* ``--checkpoint sam_vit_b_01ec64.pth`` runs segment-anything's ``SamAutomaticMaskGenerator``
  (the real SAM; ``--model-type`` vit_b / vit_l / vit_h). ``--random-weights`` builds the same
  model with random weights (``sam_model_registry[type](checkpoint=None)``): only to exercise the
  integration where the published weights cannot be downloaded.
* ``--proposer felzenszwalb`` (or ``slic``), used when no checkpoint is available: classical
  regions from scikit-image. Their scores are a documented region-quality estimate:
  ``predicted_iou`` = IoU between the region and a nearest-mean colour re-segmentation of its
  neighbourhood in the image smoothed by a Gaussian (sigma 1.5 px) (a window around the
  region's box, 8 px margin; every pixel there goes to the region if its colour is nearer the
  region's mean colour than the mean of the ring of pixels within 5 px outside the region, and
  only the connected part touching the region counts). A
  region that a colour boundary cleanly separates from its surroundings scores near 1.
  ``stability_score`` = |mask eroded by 1 px| / |mask dilated by 1 px| (the IoU of the two; like
  SAM's score it drops for thin or ragged masks). These scores are calibrated differently from
  SAM's (clean synthetic objects score about 0.85-0.95, not above 0.97), so the quick profile
  sets its own ``sammix.min_iou``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from shared.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def encode_rle(mask: np.ndarray) -> dict:
    """Binary (H, W) mask -> COCO RLE with a str ``counts`` (JSON friendly)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]}


def _record(mask: np.ndarray, predicted_iou: float, stability: float) -> dict:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    h, w = mask.shape
    cy, cx = np.mean(ys), np.mean(xs)
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))  # a point inside the mask
    return {"segmentation": encode_rle(mask), "area": int(mask.sum()),
            "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
            "predicted_iou": float(predicted_iou), "point_coords": [[float(xs[k]),
                                                                     float(ys[k])]],
            "stability_score": float(stability), "crop_box": [0, 0, w, h]}


def region_quality(img: np.ndarray, mask: np.ndarray, margin: int = 8, ring: int = 5
                   ) -> tuple[float, float]:
    """(predicted_iou, stability_score) of a proposal, as documented in the module docstring."""
    import cv2

    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, h)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, w)
    m = mask[y0:y1, x0:x1].astype(np.uint8)
    im = img[y0:y1, x0:x1].astype(np.float32) / 255.0
    k3 = np.ones((3, 3), np.uint8)
    ring_m = (cv2.dilate(m, np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)) > 0) & (m == 0)
    inside = m > 0
    if not ring_m.any():
        iou = 1.0
    else:
        mu_in = im[inside].mean(0)
        mu_out = im[ring_m].mean(0)
        near_in = ((im - mu_in) ** 2).sum(-1) < ((im - mu_out) ** 2).sum(-1)
        n, lab = cv2.connectedComponents(near_in.astype(np.uint8), connectivity=8)
        touching = np.unique(lab[inside & near_in])
        touching = touching[touching > 0]
        refined = np.isin(lab, touching)
        inter = (refined & inside).sum()
        union = (refined | inside).sum()
        iou = float(inter / max(union, 1))
    ero = cv2.erode(m, k3).sum()
    dil = cv2.dilate(m, k3).sum()
    return iou, float(ero / max(dil, 1))


def propose(img: np.ndarray, method: str = "felzenszwalb", min_area: int = 50,
            max_records: int = 100) -> list[dict]:
    """Classical region proposals in SAM's record format, best first."""
    from skimage.segmentation import felzenszwalb, slic

    if method == "felzenszwalb":
        seg = felzenszwalb(img, scale=150, sigma=0.8, min_size=min_area)
    elif method == "slic":
        seg = slic(img, n_segments=60, compactness=12, start_label=0)
    else:
        raise ValueError(f"unknown proposer {method!r} (felzenszwalb or slic)")
    import cv2

    smooth = cv2.GaussianBlur(img, (0, 0), 1.5)
    records = []
    for r in np.unique(seg):
        mask = seg == r
        if mask.sum() < min_area:
            continue
        iou, stab = region_quality(smooth, mask)
        records.append(_record(mask, iou, stab))
    records.sort(key=lambda rec: (-rec["predicted_iou"], -rec["stability_score"]))
    return records[:max_records]


def build_sam_generator(model_type: str = "vit_b", checkpoint: str | None = None,
                        points_per_side: int = 32, pred_iou_thresh: float = 0.88,
                        stability_score_thresh: float = 0.95, device: str = "cpu"):
    """segment-anything's automatic mask generator (``checkpoint=None``: random weights).

    The checkpoint is read here with the one safe loader (``shared.torch_checkpoint``:
    ``torch.load(weights_only=True)``) and handed to the model as a state dict, checked
    strictly; segment-anything never unpickles the file itself (its own loader is passed
    ``checkpoint=None``).
    """
    from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

    from shared.errors import UserError
    from shared.torch_checkpoint import is_state_dict, load_strict, load_torch_file

    if model_type not in sam_model_registry:
        raise UserError(f"unknown SAM model type {model_type!r} "
                        f"(one of {sorted(sam_model_registry)})")
    state = None
    if checkpoint is not None:
        state = load_torch_file(checkpoint, what="SAM checkpoint")
        if not is_state_dict(state):
            raise UserError(f"{checkpoint}: not a SAM state dict")
    sam = sam_model_registry[model_type](checkpoint=None)
    if state is not None:
        load_strict(sam, state, checkpoint, f"SAM {model_type}")
    sam.to(device).eval()
    return SamAutomaticMaskGenerator(sam, points_per_side=points_per_side,
                                     pred_iou_thresh=pred_iou_thresh,
                                     stability_score_thresh=stability_score_thresh,
                                     output_mode="coco_rle")


def sam_records(generator, img: np.ndarray) -> list[dict]:
    """Run SAM on one RGB uint8 image; records sorted best first, JSON-ready."""
    import torch

    with torch.no_grad():
        recs = generator.generate(img)
    out = []
    for r in recs:
        seg = dict(r["segmentation"])
        if isinstance(seg.get("counts"), bytes):
            seg["counts"] = seg["counts"].decode("ascii")
        out.append({"segmentation": {"size": [int(v) for v in seg["size"]],
                                     "counts": seg["counts"]},
                    "area": int(r["area"]), "bbox": [float(v) for v in r["bbox"]],
                    "predicted_iou": float(r["predicted_iou"]),
                    "point_coords": [[float(a) for a in p] for p in r["point_coords"]],
                    "stability_score": float(r["stability_score"]),
                    "crop_box": [float(v) for v in r["crop_box"]]})
    out.sort(key=lambda rec: (-rec["predicted_iou"], -rec["stability_score"]))
    return out


def list_images(folder: Path, stems_file: Path | None = None) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"{folder}: image folder not found")
    if stems_file is not None:
        if not stems_file.is_file():
            raise UserError(f"{stems_file}: sample list not found")
        try:
            stems = [str(s) for s in json.loads(stems_file.read_text(encoding="utf-8"))]
        except (ValueError, TypeError):
            raise UserError(f"{stems_file}: not a JSON list of sample names") from None
        paths = [folder / f"{s}.jpg" for s in stems]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise UserError(f"{missing[0]}: image file not found")
        return paths
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"{folder}: no .jpg/.png image in the folder")
    return paths


def run(images: Path, out: Path, checkpoint: str | None = None, random_weights: bool = False,
        model_type: str = "vit_b", proposer: str = "felzenszwalb", points_per_side: int = 32,
        pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
        stems_file: Path | None = None, overwrite: bool = False, device: str = "cpu",
        progress: bool = True) -> list[Path]:
    """Write ``<out>/<stem>.json`` for every image; existing files are kept unless overwrite."""
    from tqdm import tqdm

    from shared.atomic import atomic_write_json
    from shared.errors import UserError
    from shared.images import read_image

    paths = list_images(Path(images), stems_file)
    settings = {"source": "sam" if (checkpoint is not None or random_weights) else proposer,
                "checkpoint": Path(checkpoint).name if checkpoint else None,
                "random_weights": bool(random_weights), "model_type": model_type,
                "points_per_side": points_per_side, "pred_iou_thresh": pred_iou_thresh,
                "stability_score_thresh": stability_score_thresh}
    record = Path(out) / "proposer.settings"  # JSON; not *.json: one mask file per image
    if record.is_file() and not overwrite:
        import json

        try:
            old = json.loads(record.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            old = None
        if old != settings:
            changed = sorted(k for k in settings
                             if not isinstance(old, dict) or old.get(k) != settings[k])
            raise UserError(f"{out}: holds masks made with other settings "
                            f"({', '.join(changed)}); pass --overwrite or choose another --out")
    gen = None
    if checkpoint is not None or random_weights:
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise UserError(f"{checkpoint}: SAM checkpoint not found")
        gen = build_sam_generator(model_type, checkpoint, points_per_side, pred_iou_thresh,
                                  stability_score_thresh, device)
    atomic_write_json(record, settings)
    written = []
    for p in tqdm(paths, desc="SAM masks" if gen else f"{proposer} proposals",
                  disable=not progress):
        target = Path(out) / f"{p.stem}.json"
        if target.exists() and not overwrite:
            written.append(target)
            continue
        img = read_image(p, mode="RGB")
        recs = sam_records(gen, img) if gen is not None else propose(img, proposer)
        atomic_write_json(target, recs, indent=None)
        written.append(target)
    return written


def _main(argv=None) -> int:
    from shared.cli import add_progress_argument, finish_parser, hidden_alias, progress_enabled

    p = argparse.ArgumentParser(
        prog="s5mars-sam-masks",
        description="Write SAM automatic-mask records (COCO RLE, predicted_iou, stability_score, "
                    "area, bbox; best first) as one JSON per image, with the real SAM "
                    "(--model) or a classical proposer (--proposer) when no SAM weights "
                    "exist.")
    p.add_argument("--images", required=True, help="folder of .jpg/.png images (required)")
    p.add_argument("--out", required=True, help="output folder for <stem>.json (required)")
    p.add_argument("--list", default=None, help="optional JSON array of stems to process")
    p.add_argument("--model", dest="checkpoint", default=None, metavar="PATH",
                   help="SAM weights, e.g. sam_vit_b_01ec64.pth (default: none, use --proposer)")
    hidden_alias(p, "--checkpoint", dest="checkpoint")
    p.add_argument("--variant", dest="model_type", default="vit_b",
                   choices=["vit_b", "vit_l", "vit_h", "default"], help="SAM architecture")
    hidden_alias(p, "--model-type", dest="model_type",
                 choices=["vit_b", "vit_l", "vit_h", "default"])
    p.add_argument("--random-weights", action="store_true",
                   help="build SAM with random weights (integration tests only)")
    p.add_argument("--proposer", default="felzenszwalb", choices=["felzenszwalb", "slic"],
                   help="classical proposer used without SAM weights")
    p.add_argument("--points-per-side", type=int, default=32, help="SAM point grid side")
    p.add_argument("--pred-iou-thresh", type=float, default=0.88,
                   help="SAM predicted-IoU threshold")
    p.add_argument("--stability-score-thresh", type=float, default=0.95,
                   help="SAM stability-score threshold")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N; a device that is not "
                   "there is an error")
    add_progress_argument(p, aliases=())
    p.add_argument("--overwrite", action="store_true", help="recompute existing JSON files")
    args = finish_parser(p).parse_args(argv)
    if args.device != "cpu":
        from shared.torch_runtime import pick_device

        pick_device(args.device)  # a device that is not there: one line, exit code 2
    from shared.errors import UserError
    from shared.runs import check_output_dir

    if args.points_per_side < 1:
        raise UserError("--points-per-side must be positive")
    check_output_dir(args.out)
    files = run(Path(args.images), Path(args.out), args.checkpoint, args.random_weights,
                args.model_type, args.proposer, args.points_per_side, args.pred_iou_thresh,
                args.stability_score_thresh, Path(args.list) if args.list else None,
                args.overwrite, args.device, progress=progress_enabled(args.no_progress))
    print(f"wrote {len(files)} mask files to {args.out}")
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
