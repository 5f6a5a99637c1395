"""Evaluate a checkpoint (teacher by default): mIoU and per-class IoU, ignore 255.

``python -m s5mars_ssl.evaluate --checkpoint runs/s5mars_ssl/quick_full/last.pt``; the data
root and test list default to the ones in the checkpoint's config. ``--mode sliding`` evaluates
large images window by window.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def evaluate_checkpoint(checkpoint, weights: str = "teacher", data_root=None, test_list=None,
                        mode: str | None = None, crop: int | None = None,
                        stride: int | None = None, device: str = "cpu") -> dict:
    from torch.utils.data import DataLoader

    from s5mars_ssl.augseg.dataset.mars import MarsDataset, read_sample_list
    from s5mars_ssl.augseg.utils.metrics import evaluate
    from s5mars_ssl.checkpoint import load_model
    from s5mars_ssl.constants import CLASSES
    from shared.configs import resolve_path
    from shared.errors import UserError

    model, info = load_model(checkpoint, weights, device)
    used, cfg = info["weights"], info["config"]
    if cfg is None:  # an original file: the paper profile's evaluation, its normalisation
        from s5mars_ssl.augseg.utils.config import load_config

        cfg = load_config("paper")
        if data_root is None:
            raise UserError(f"{checkpoint}: an original checkpoint holds no data path; pass "
                            "--data-root")
    d = dict(cfg["dataset"])
    d["mean"], d["std"] = info["normalization"]["mean"], info["normalization"]["std"]
    # --data is a shell path (from the current folder); a config's root the one config rule
    root = Path(data_root) if data_root else resolve_path(d["root"])
    stems = read_sample_list(root / (test_list or d["test_list"]))
    mode = mode or d.get("eval_mode", "whole")
    center = d.get("eval_crop", 1024) if mode == "center_crop" else None
    ds = MarsDataset(root, stems, "val", d, center_crop=center)
    res = evaluate(model, DataLoader(ds, batch_size=1), model.num_classes, device, mode=mode,
                   crop=crop or d.get("sliding_crop", d["crop_size"]),
                   stride=stride or d.get("sliding_stride", d["crop_size"]), progress=True)
    return {"checkpoint": str(checkpoint), "format": info["format"], "weights": used,
            "mode": mode, "images": len(stems), "miou": res["miou"],
            "miou_all": res["miou_all"], "per_class_iou": dict(zip(CLASSES, res["iou"])),
            "pixel_acc": res["pixel_acc"]}


def _main(argv=None) -> int:
    from shared.cli import finish_parser, hidden_alias

    p = argparse.ArgumentParser(
        prog="s5mars-evaluate",
        description="mIoU and per-class IoU of a checkpoint on a labelled test list.")
    p.add_argument("--model", dest="checkpoint", metavar="PATH",
                   help="trained weights (required): last.pt/best.pt of a run, or the "
                        "original's ckpt_best.pth / ckpt.pth")
    hidden_alias(p, "--checkpoint", dest="checkpoint")
    p.add_argument("--weights", default="teacher", choices=["teacher", "student"],
                   help="which weights of the checkpoint")
    p.add_argument("--data", dest="data_root", default=None,
                   help="dataset folder (default: from the config)")
    hidden_alias(p, "--data-root", dest="data_root")
    p.add_argument("--list", default=None, help="JSON list of test stems, relative to the root")
    p.add_argument("--mode", default=None, choices=["whole", "center_crop", "sliding"],
                   help="default: the run's (the paper profile: the original's 1024 centre "
                        "crop)")
    p.add_argument("--crop", type=int, default=None, help="sliding window size")
    p.add_argument("--stride", type=int, default=None, help="sliding window stride")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N; a device that is "
                   "not there is an error")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    from shared.runs import declare_paths

    declare_paths(p, inputs=["checkpoint", "data_root", "list"], outputs=["out"])
    args = finish_parser(p).parse_args(argv)
    if args.checkpoint is None:
        p.error("--model PATH is required (the trained weights)")
    from shared.torch_runtime import pick_device

    args.device = str(pick_device(args.device))
    res = evaluate_checkpoint(args.checkpoint, args.weights, args.data_root, args.list,
                              args.mode, args.crop, args.stride, args.device)
    print(json.dumps(res, indent=2))
    if args.out:
        from shared.atomic import atomic_write_json

        atomic_write_json(Path(args.out), res)
    return 0


def main(argv=None) -> int:
    from s5mars_ssl.runtime import passive_openmp
    from shared.runs import cli_main

    passive_openmp()
    from shared.cli import help_first

    if (rc := help_first(_main, argv)) is not None:
        return rc
    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
