"""Convert a reference ``best_model.pth`` (fusion or baseline) into our checkpoint format.

``python -m dune_vlm.convert_checkpoint SRC DST [--text_embed_path EMB.npy]`` recognises the
file by its keys, maps every tensor strictly, and writes ``DST`` (atomically) with the model
spec, the provenance (source file name, sha256, detected format) and, with
``--text_embed_path``, the text embeddings, so that ``inference``, ``inference_tile`` and
``train.py --set model.init=DST`` (fine-tuning) use it like our own checkpoints.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import finish_parser, hidden_alias

    p = argparse.ArgumentParser(
        prog="dunes-convert",
        description="Convert the authors' best_model.pth (fusion or Embed-only baseline) or "
                    "one of our checkpoints into our checkpoint format, with provenance.")
    p.add_argument("src", help="reference best_model.pth (or our .pt)")
    p.add_argument("dst", help="our checkpoint to write (.pt)")
    p.add_argument("--text-embeds", dest="text_embed_path", metavar="NPY",
                   help="(classes, D) .npy stored with a fusion model "
                   "(the reference file holds none); an error for the baseline")
    hidden_alias(p, "--text_embed_path", dest="text_embed_path")
    return finish_parser(p)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from dune_vlm.checkpoint import convert

    payload = convert(args.src, args.dst, args.text_embed_path)
    prov, spec = payload["provenance"], payload["model_spec"]
    print(f"wrote {args.dst}: {spec['name']} model ({spec['num_classes']} classes) from "
          f"{prov['source']} ({prov['format']}, sha256 {prov['sha256'][:12]}...)"
          + ("" if "text_embeds" in payload else "; no text embeddings stored"))
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
