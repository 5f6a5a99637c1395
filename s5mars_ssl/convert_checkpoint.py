"""Convert the original S5Mars/AugSeg ``ckpt_best.pth`` / ``ckpt.pth`` (or a bare model state
dict) into our checkpoint format, with its provenance (source file name, sha256, detected
format, epoch, best mIoU) and the original's normalisation.

``python -m s5mars_ssl.convert_checkpoint ckpt_best.pth runs/s5mars_ssl/authors/last.pt``; the
result loads in ``predict``, ``evaluate`` and as ``--init`` of the trainers.
"""

from __future__ import annotations

import argparse
import json


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="s5mars-convert",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="the original ckpt_best.pth / ckpt.pth or model state dict")
    p.add_argument("dst", help="our checkpoint to write (.pt)")
    args = p.parse_args(argv)
    from s5mars_ssl.runtime import passive_openmp

    passive_openmp()
    from s5mars_ssl.checkpoint import convert
    from shared.runs import check_not_inputs, check_output_dir

    check_not_inputs([args.dst], [args.src])
    from pathlib import Path

    check_output_dir(Path(args.dst).parent)
    prov = convert(args.src, args.dst)
    print(json.dumps({"written": args.dst, **prov}, indent=2))
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
