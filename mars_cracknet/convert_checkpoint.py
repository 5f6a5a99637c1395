"""Convert an original Mars-CrackNet checkpoint (``torch.save(net.state_dict())`` of
``Res_UNet`` or ``UNet``) into our safetensors format, with its provenance.

    python -m mars_cracknet.convert_checkpoint weights/ResUNet_x/100.pth resunet.safetensors

The file is read with ``torch.load(weights_only=True)``, recognised from its keys, mapped
strictly (every tensor placed, every shape checked) and written with the source file name,
its sha256 and the detected format in the metadata. The result loads in ``predict`` and
initialises ``train`` (``--set init_weights=...``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import finish_parser

    p = argparse.ArgumentParser(prog="cracknet-convert", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("src", type=Path, help="original .pth/.pt (or one of ours)")
    p.add_argument("dst", type=Path, help="output .safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    return finish_parser(p)


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mars_cracknet.checkpoint import load_model, read_any, save_weights
    from shared.atomic import file_sha256 as sha256
    from shared.errors import UserError
    from shared.runs import check_not_inputs, check_output_dir

    check_not_inputs([args.dst], [args.src])
    check_output_dir(args.dst.parent)
    if args.dst.exists() and not args.overwrite:
        raise UserError(f"{args.dst}: exists; pass --overwrite to replace it")
    _, _, fmt = read_any(args.src)
    model, name = load_model(args.src)
    args.dst.parent.mkdir(parents=True, exist_ok=True)
    save_weights(args.dst, model, name, {"source_name": args.src.name,
                                          "source_sha256": sha256(args.src),
                                          "source_format": fmt})
    print(f"{args.src} ({fmt}) -> {args.dst} ({name}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import help_first

    if (rc := help_first(_main, argv)) is not None:
        return rc
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
