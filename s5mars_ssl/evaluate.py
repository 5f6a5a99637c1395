"""Evaluate a checkpoint (teacher by default): mIoU and per-class IoU, ignore 255.

``python -m s5mars_ssl.evaluate --checkpoint runs/s5mars_ssl/quick_full/last.pt``; the data
root and test list default to the ones in the checkpoint's config. ``--mode sliding`` evaluates
large images window by window.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def evaluate_checkpoint(checkpoint, weights: str = "teacher", data_root=None, test_list=None,
                        mode: str | None = None, crop: int | None = None,
                        stride: int | None = None, device: str = "cpu") -> dict:
    from torch.utils.data import DataLoader

    from s5mars_ssl.augseg.dataset.mars import MarsDataset, read_sample_list
    from s5mars_ssl.augseg.utils.config import resolve_path
    from s5mars_ssl.augseg.utils.metrics import evaluate
    from s5mars_ssl.checkpoint import load_model
    from s5mars_ssl.constants import CLASSES

    model, cfg, used = load_model(checkpoint, weights, device)
    d = dict(cfg["dataset"])
    root = resolve_path(data_root or d["root"])
    stems = read_sample_list(root / (test_list or d["test_list"]))
    ds = MarsDataset(root, stems, "val", d)
    mode = mode or d.get("eval_mode", "whole")
    res = evaluate(model, DataLoader(ds, batch_size=1), model.num_classes, device, mode=mode,
                   crop=crop or d.get("eval_crop", d["crop_size"]),
                   stride=stride or d.get("eval_stride", d["crop_size"]), progress=True)
    return {"checkpoint": str(checkpoint), "weights": used, "mode": mode, "images": len(stems),
            "miou": res["miou"], "per_class_iou": dict(zip(CLASSES, res["iou"])),
            "pixel_acc": res["pixel_acc"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m s5mars_ssl.evaluate",
        description="mIoU and per-class IoU of a checkpoint on a labelled test list.")
    p.add_argument("--checkpoint", required=True, help="last.pt of a training run")
    p.add_argument("--weights", default="teacher", choices=["teacher", "student"])
    p.add_argument("--data-root", default=None, help="dataset folder (default: from the config)")
    p.add_argument("--list", default=None, help="JSON list of test stems, relative to the root")
    p.add_argument("--mode", default=None, choices=["whole", "sliding"])
    p.add_argument("--crop", type=int, default=None, help="sliding window size")
    p.add_argument("--stride", type=int, default=None, help="sliding window stride")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    from s5mars_ssl.runtime import passive_openmp

    passive_openmp()
    from s5mars_ssl.augseg.dataset.mars import DataError
    from s5mars_ssl.checkpoint import CheckpointError

    try:
        res = evaluate_checkpoint(args.checkpoint, args.weights, args.data_root, args.list,
                                  args.mode, args.crop, args.stride, args.device)
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(res, indent=2))
    if args.out:
        from shared import atomic_write_json

        atomic_write_json(Path(args.out), res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
