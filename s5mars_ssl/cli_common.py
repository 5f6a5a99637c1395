"""The training CLI shared by train_supervised.py and train_semi.py (run contract of
``shared.runs``: ``--config``, ``--run-dir``, ``--resume``, ``--overwrite``, ``--set``)."""

from __future__ import annotations

import argparse


def build_parser(mode: str) -> argparse.ArgumentParser:
    from shared.cli import (
        add_precision_argument,
        add_progress_argument,
        finish_parser,
        hidden_alias,
    )
    from shared.runs import add_run_arguments, positive_int

    what = ("supervised baseline (labelled crops only, OHEM cross-entropy)" if mode == "supervised"
            else "semi-supervised S5Mars method: mean teacher + AugIN + SAM-Mix + soft-to-hard "
                 "consistency (each switchable)")
    p = argparse.ArgumentParser(
        prog=f"s5mars-train-{mode}",
        description=f"Train the DeepLabv3+ ResNet-50c {what}. Profiles: paper, paper_semi, "
                    "paper_supervised, quick, quick_<row> (s5mars_ssl/exps/), or a YAML file.",
        epilog="Multi-process: torchrun --nproc_per_node=N -m s5mars_ssl.train_semi --config ... "
               "(gloo on CPU, NCCL + SyncBatchNorm on CUDA). SIGINT/SIGTERM save a resumable "
               "checkpoint (exit 130/143); continue with --resume.")
    default = "quick_supervised" if mode == "supervised" else "quick"
    add_run_arguments(p, default_config=default)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]; "
                   "a device that is not there is an error")
    add_precision_argument(p, default=None)
    p.add_argument("--pretrained", default=None,
                   help="ImageNet ResNet-50(c) state dict for the encoder (the AugSeg "
                        "pretrain/resnet50.pth layout or ours; default: from the config)")
    p.add_argument("--init", default=None,
                   help="initialise the whole model from our checkpoint or the original's "
                        "ckpt_best.pth / ckpt.pth (teacher weights; net.init_weights=student "
                        "for the student)")
    p.add_argument("--data", dest="data_root", default=None,
                   help="dataset folder (default: the config's dataset.root)")
    hidden_alias(p, "--data-root", "--data_root", dest="data_root")
    p.add_argument("--iterations", type=positive_int, default=None,
                   help="training iterations (default: the config's trainer.iterations)")
    add_progress_argument(p)
    if mode == "semi":
        p.add_argument("--no-augin", action="store_true", help="switch AugIN off")
        p.add_argument("--no-sammix", action="store_true", help="switch SAM-Mix off")
        p.add_argument("--no-soft-to-hard", action="store_true",
                       help="plain hard pseudo-labels above semi.conf_thresh instead")
        p.add_argument("--augin-mode", choices=["mean", "std", "both"], default=None,
                       help="AugIN variant (default: from the config)")
    return finish_parser(p, set_example="trainer.iterations=3")


def _overrides(args, mode: str) -> list[str]:
    """The shortcut flags as ``--set`` items; a path flag is a shell path, made absolute from
    the current folder (a relative path in a config is taken from the repository root)."""
    from shared.configs import cli_path

    ov = [f"mode={mode}"]
    if args.data_root:
        ov.append(f"dataset.root={cli_path(args.data_root)}")
    if args.iterations is not None:
        ov.append(f"trainer.iterations={args.iterations}")
    if args.pretrained:
        ov.append(f"net.pretrained={cli_path(args.pretrained)}")
    if args.init:
        ov.append(f"net.init={cli_path(args.init)}")
    if getattr(args, "precision", None) is not None:  # --precision (or the old --amp)
        ov.append(f"trainer.precision={args.precision}")
    if mode == "semi":
        for flag, key in (("no_augin", "augin"), ("no_sammix", "sammix"),
                          ("no_soft_to_hard", "soft_to_hard")):
            if getattr(args, flag):
                ov.append(f"semi.{key}.enabled=false")
        if args.augin_mode:
            ov.append(f"semi.augin.mode={args.augin_mode}")
    return ov


def _main(mode: str, argv=None) -> int:
    args = build_parser(mode).parse_args(argv)
    from pathlib import Path

    from s5mars_ssl.runtime import passive_openmp

    passive_openmp()
    from s5mars_ssl.augseg.utils.config import PROFILES, validate
    from shared.configs import REPO_ROOT
    from shared.runs import run_config

    # the shortcut flags count on --resume too: a value that differs from the run's config is
    # refused by RunDir.open, never silently dropped (issue 27)
    args.overrides = list(args.overrides) + _overrides(args, mode)
    cfg = run_config(args, PROFILES)
    validate(cfg)
    run_dir = args.run_dir or (REPO_ROOT / "runs" / "s5mars_ssl" /
                               cfg.get("name", Path(str(args.config or "quick")).stem))
    from s5mars_ssl.augseg.trainer import run
    from shared.cli import progress_enabled

    result = run(cfg, run_dir, resume=args.resume, overwrite=args.overwrite, device=args.device,
                 progress=progress_enabled(args.no_progress))
    if result:
        print(f"final mIoU ({result['evaluated']}, {result['eval_mode']}): "
              f"{result['miou'] * 100:.2f} -> {Path(run_dir) / 'summary.json'}")
    return 0


def main(mode: str, argv=None) -> int:
    from s5mars_ssl.runtime import passive_openmp
    from shared.runs import cli_main

    passive_openmp()  # before torch is imported
    from shared.cli import help_first

    if (rc := help_first(_main, argv, mode)) is not None:
        return rc

    return cli_main(lambda a: _main(mode, a), argv)
