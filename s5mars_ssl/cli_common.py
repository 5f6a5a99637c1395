"""Argument parsing shared by train_supervised.py and train_semi.py (no heavy imports here)."""

from __future__ import annotations

import argparse
import sys


def build_parser(mode: str) -> argparse.ArgumentParser:
    what = ("supervised baseline (labelled crops only, OHEM cross-entropy)" if mode == "supervised"
            else "semi-supervised S5Mars method: mean teacher + AugIN + SAM-Mix + soft-to-hard "
                 "consistency (each switchable)")
    p = argparse.ArgumentParser(
        prog=f"python -m s5mars_ssl.train_{mode}",
        description=f"Train the DeepLabv3+ ResNet-50c {what}. Configs: "
                    "s5mars_ssl/exps/s5mars/ (paper profile) and s5mars_ssl/exps/quick/ (CPU).",
        epilog="Multi-process: torchrun --nproc_per_node=N -m s5mars_ssl.train_semi --config ... "
               "(gloo on CPU, NCCL + SyncBatchNorm on CUDA).")
    p.add_argument("--config", required=True, help="YAML config (see exps/)")
    p.add_argument("--run-dir", default=None,
                   help="run folder (default: runs/s5mars_ssl/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/last.pt")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (fp16 + GradScaler on CUDA, bf16 autocast on CPU)")
    p.add_argument("--pretrained", default=None,
                   help="ImageNet ResNet-50 state dict for the encoder (default: from the config; "
                        "train from scratch if none)")
    p.add_argument("--data-root", default=None, help="override dataset.root")
    p.add_argument("--iterations", type=int, default=None, help="override trainer.iterations")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config value, e.g. --set semi.augin.mode=mean (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    if mode == "semi":
        p.add_argument("--no-augin", action="store_true", help="switch AugIN off")
        p.add_argument("--no-sammix", action="store_true", help="switch SAM-Mix off")
        p.add_argument("--no-soft-to-hard", action="store_true",
                       help="plain hard pseudo-labels above semi.conf_thresh instead")
        p.add_argument("--augin-mode", choices=["mean", "std", "both"], default=None,
                       help="AugIN variant (default: from the config)")
    return p


def main(mode: str, argv=None) -> int:
    args = build_parser(mode).parse_args(argv)
    from pathlib import Path

    from s5mars_ssl.runtime import passive_openmp

    passive_openmp()

    from s5mars_ssl.augseg.utils.config import (
        REPO_ROOT,
        ConfigError,
        apply_overrides,
        load_config,
        validate,
    )

    try:
        cfg = load_config(args.config)
        ov = list(args.overrides)
        if args.data_root:
            ov.append(f"dataset.root={args.data_root}")
        if args.iterations:
            ov.append(f"trainer.iterations={args.iterations}")
        if args.pretrained:
            ov.append(f"net.pretrained={args.pretrained}")
        if mode == "semi":
            if args.no_augin:
                ov.append("semi.augin.enabled=false")
            if args.no_sammix:
                ov.append("semi.sammix.enabled=false")
            if args.no_soft_to_hard:
                ov.append("semi.soft_to_hard.enabled=false")
            if args.augin_mode:
                ov.append(f"semi.augin.mode={args.augin_mode}")
        cfg = apply_overrides(cfg, ov)
        validate(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else (
        REPO_ROOT / "runs" / "s5mars_ssl" / cfg.get("name", Path(args.config).stem))
    from s5mars_ssl.augseg.dataset.mars import DataError
    from s5mars_ssl.augseg.dataset.sam_mix import SamMaskError
    from s5mars_ssl.augseg.models.model_helper import PretrainedLoadError
    from s5mars_ssl.augseg.trainer import train

    try:
        result = train(cfg, run_dir, mode=mode, resume=args.resume, device=args.device,
                       amp=args.amp, progress=not args.no_progress)
    except (DataError, SamMaskError, PretrainedLoadError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result:
        print(f"final mIoU ({result['evaluated']}): {result['miou'] * 100:.2f} -> "
              f"{run_dir / 'eval.json'}")
    return 0
