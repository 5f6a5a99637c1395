"""Evaluate a trained model on a split: OA, mIoU, mF1, kappa, per class and per region.

Prints a table, writes ``metrics.json`` (overall, per class, per region, confusion matrix) and a
confusion-matrix figure into ``--out`` (default: the checkpoint's folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import finish_parser, hidden_alias
    from shared.runs import positive_int

    p = argparse.ArgumentParser(
        prog="dunes-evaluate",
        description="Evaluate a dune_vlm checkpoint on img_dir/ann_dir/<split>: OA, per-class "
                    "IoU/F1, mIoU, mF1, Cohen's kappa, per region, confusion matrix figure.")
    p.add_argument("--data", dest="data_root", help="dataset root (img_dir/, ann_dir/) "
                   "(required)")
    hidden_alias(p, "--data_root", "--data-root", dest="data_root")
    p.add_argument("--model", dest="weights", metavar="PATH",
                   help="trained weights (required): our checkpoint (best.pt / last.pt) or a "
                        "reference best_model.pth")
    hidden_alias(p, "--weights", dest="weights")
    p.add_argument("--split", default="test", choices=["train", "val", "test"],
                   help="which split to evaluate")
    p.add_argument("--text-embeds", dest="text_embed_path", metavar="NPY",
                   help="(classes, D) .npy text embeddings: needed for a "
                   "reference fusion best_model.pth, else overrides the stored ones; an error "
                   "for the baseline (it takes no text)")
    hidden_alias(p, "--text_embed_path", dest="text_embed_path")
    p.add_argument("--out", help="output folder (default: the checkpoint's folder)")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=8,
                   help="tiles per forward pass")
    hidden_alias(p, "--batch_size", dest="batch_size", type=positive_int)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps; a device "
                   "that is not there is an error")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--tag", default="", help="prefix for output file names (default: none)")
    return finish_parser(p)


def confusion_figure(cm: np.ndarray, names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.figures import save_figure

    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9.5, 8.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=10)
    ax.set_yticks(range(len(names)), [f"{n} (n={int(cm[i].sum()):,})"
                                      for i, n in enumerate(names)], fontsize=10)
    for i in range(len(names)):
        for j in range(len(names)):
            if norm[i, j] >= 0.01:
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class", fontsize=11)
    ax.set_ylabel("true class (rows sum to 1; n = labelled pixels)", fontsize=11)
    ax.set_title(title, fontsize=11)
    fig.colorbar(im, ax=ax, fraction=0.046).ax.tick_params(labelsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def format_table(metrics: dict, names: list[str]) -> str:
    lines = [f"{'class':34s} {'IoU':>7s} {'F1':>7s} {'pixels':>9s}"]
    for name, iou, f1, n in zip(names, metrics["IoU"], metrics["F1"], metrics["support"]):
        lines.append(f"{name:34s} {iou * 100:7.2f} {f1 * 100:7.2f} {n:9d}")
    lines.append(f"OA {metrics['OA'] * 100:.2f} %  mIoU {metrics['mIoU'] * 100:.2f} % "
                 f"(reference definition, absent classes 0: {metrics['mIoU_ref'] * 100:.2f} %)  "
                 f"mF1 {metrics['mF1'] * 100:.2f} %  kappa {metrics['kappa']:.4f}")
    return "\n".join(lines)


def run_evaluation(data_root, weights, split="test", text_embed_path=None, out=None,
                   batch_size=8, device="auto", tag="", progress=True) -> dict:
    import torch

    from dune_vlm.checkpoint import load_model_for_inference
    from dune_vlm.evaluation import evaluate
    from dune_vlm.utils.config import class_names
    from dune_vlm.utils.dataset import DuneDataset
    from shared.atomic import atomic_write_json
    from shared.torch_runtime import pick_device

    dev = pick_device(device)
    model, text, spec = load_model_for_inference(weights, text_embed_path, dev)
    ds = DuneDataset(data_root, split, spec["num_classes"], spec.get("in_chans", 64))
    with torch.inference_mode():
        res = evaluate(model, ds, text, dev, spec["num_classes"], batch_size,
                       regions=ds.regions, progress=progress)
    overall = res["overall"].compute()
    names = class_names()
    if len(names) != spec["num_classes"]:
        names = [f"class {i}" for i in range(spec["num_classes"])]
    result = {
        "weights": str(weights), "weights_format": model.checkpoint_format, "split": split,
        "model": spec["name"],
        "tiles": len(ds), "overall": overall,
        "per_class": {n: {"IoU": i, "F1": f, "pixels": s} for n, i, f, s in
                      zip(names, overall["IoU"], overall["F1"], overall["support"])},
        "per_region": {r: {k: v for k, v in m.compute().items()
                           if k in ("OA", "mIoU", "mF1", "kappa", "pixels")}
                       for r, m in sorted(res["regions"].items())},
    }
    out_dir = Path(out) if out else Path(weights).parent
    prefix = f"{tag}_" if tag else ""
    atomic_write_json(out_dir / f"{prefix}metrics_{split}.json", result)
    confusion_figure(np.asarray(overall["confusion"]), names,
                     out_dir / f"{prefix}confusion_{split}.png",
                     f"{spec['name']} on {split}: OA {overall['OA'] * 100:.1f} %, "
                     f"mIoU {overall['mIoU'] * 100:.1f} %")
    result["out_dir"] = str(out_dir)
    return result


def _main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    for dest, flag in (("data_root", "--data"), ("weights", "--model")):
        if getattr(args, dest, None) is None:
            p.error(f"{flag} is required")
    import torch

    from dune_vlm.utils.config import class_names

    torch.set_num_threads(max(1, args.threads))
    res = run_evaluation(args.data_root, args.weights, args.split, args.text_embed_path,
                         args.out, args.batch_size, args.device, args.tag)
    names = list(res["per_class"])
    print(format_table(res["overall"], names if names else class_names()))
    for region, m in res["per_region"].items():
        print(f"  {region:10s} OA {m['OA'] * 100:6.2f} %  mIoU {m['mIoU'] * 100:6.2f} %  "
              f"kappa {m['kappa']:.4f}")
    print(f"wrote {res['out_dir']}")
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
