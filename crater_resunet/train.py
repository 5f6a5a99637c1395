"""Train the crater ResNet-UNet on a YOLO-layout data set (Keras 3; TensorFlow by default).

    python -m crater_resunet.train --config quick
    python -m crater_resunet.train --config paper --data /data/LU3M6TGT_yolo_format

Loss 0.5 BCE + 0.5 (1 - Dice), AdamW, early stopping on the validation loss (best weights
restored), reduce-on-plateau, the best model as ``best.keras`` (written atomically), a CSV log
of every epoch, and ``model.keras`` + ``train_summary.json`` at the end. The model is built
and compiled inside a ``tf.distribute`` strategy scope (MirroredStrategy with several GPUs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _strategy():
    """MirroredStrategy on several GPUs, else the default strategy (TF backend only)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        import contextlib

        return None, contextlib.nullcontext()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return strategy, strategy.scope()


def set_threads(n: int) -> None:
    """Cap the framework's CPU threads (call before the first op)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # already initialised
            pass
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(n)


def make_callbacks(run_dir: Path, tcfg: dict):
    """Early stopping, reduce-on-plateau, atomic best checkpoint, CSV logger."""
    import keras

    from crater_resunet.model import save_model

    class AtomicBestCheckpoint(keras.callbacks.Callback):
        """Save the model whenever ``val_loss`` improves, atomically, as ``.keras``."""

        def __init__(self, path: Path, monitor: str = "val_loss"):
            super().__init__()
            self.path, self.monitor, self.best, self.best_epoch = Path(path), monitor, None, None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(self.monitor)
            if value is None:
                return
            if self.best is None or value < self.best:
                self.best, self.best_epoch = float(value), epoch + 1
                save_model(self.model, self.path)

    ckpt = AtomicBestCheckpoint(run_dir / "best.keras")
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=tcfg["early_stopping_patience"],
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=tcfg["reduce_lr_factor"],
                                          patience=tcfg["reduce_lr_patience"],
                                          min_lr=tcfg["min_lr"], verbose=1),
        ckpt,
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
    ]
    return callbacks, ckpt


def run_training(cfg: dict, run_dir: str | os.PathLike, data_root: str | os.PathLike,
                 verbose: int = 2, threads: int = 2) -> dict:
    """Train with a resolved config; write the run folder; return the summary dict."""
    import keras
    import yaml

    from crater_resunet.data import index_split, load_labels, make_dataset
    from crater_resunet.model import build_resunet, compile_model, count_params, save_model
    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.seed import seed_everything

    t0 = time.time()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    set_threads(threads)
    seed = int(cfg["seed"])
    seed_everything(seed)
    dcfg, mcfg, tcfg = cfg["data"], cfg["model"], cfg["train"]
    size = tuple(int(v) for v in dcfg["image_size"])
    train_idx = index_split(data_root, "train")
    valid_idx = index_split(data_root, "valid")
    train_labels, valid_labels = load_labels(train_idx), load_labels(valid_idx)
    common = dict(image_size=size, batch_size=int(tcfg["batch_size"]),
                  mask_shape=dcfg["mask_shape"], channel_order=dcfg["channel_order"],
                  cache=bool(dcfg.get("cache", False)))
    train_ds = make_dataset(train_idx, shuffle=True, seed=seed, labels=train_labels,
                            augment=bool(dcfg.get("augment", False)), **common)
    valid_ds = make_dataset(valid_idx, labels=valid_labels, **common)
    atomic_write_text(run_dir / "config.yml", yaml.safe_dump(cfg, sort_keys=False))

    strategy, scope = _strategy()
    with scope:
        model = build_resunet((*size, 3), int(mcfg["base_filters"]),
                              bn_momentum=float(mcfg.get("bn_momentum", 0.99)))
        compile_model(model, float(tcfg["learning_rate"]), float(tcfg["weight_decay"]),
                      float(tcfg["threshold"]), jit_compile=tcfg.get("jit_compile", "auto"),
                      run_eagerly=bool(tcfg.get("run_eagerly", False)))
    total, trainable = count_params(model)
    print(f"model: base_filters={mcfg['base_filters']}, {total:,} parameters "
          f"({trainable:,} trainable); {len(train_idx)} train / {len(valid_idx)} valid images "
          f"from {data_root}", flush=True)
    callbacks, ckpt = make_callbacks(run_dir, tcfg)
    history = model.fit(train_ds, validation_data=valid_ds, epochs=int(tcfg["epochs"]),
                        callbacks=callbacks, verbose=verbose, shuffle=False)
    train_time = time.time() - t0
    save_model(model, run_dir / "model.keras")  # best weights, restored by early stopping
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    best = int(min(range(len(hist["val_loss"])), key=hist["val_loss"].__getitem__))
    eval_common = dict(common, cache=False)
    evaluation = {
        "train": model.evaluate(make_dataset(train_idx, labels=train_labels, **eval_common),
                                verbose=0, return_dict=True),
        "valid": model.evaluate(make_dataset(valid_idx, labels=valid_labels, **eval_common),
                                verbose=0, return_dict=True),
    }
    summary = {
        "profile": cfg.get("profile"),
        "data_root": str(data_root),
        "backend": keras.backend.backend(),
        "replicas": getattr(strategy, "num_replicas_in_sync", 1) if strategy else 1,
        "base_filters": int(mcfg["base_filters"]),
        "bn_momentum": float(mcfg.get("bn_momentum", 0.99)),
        "image_size": list(size),
        "params_total": total,
        "params_trainable": trainable,
        "train_images": len(train_idx),
        "valid_images": len(valid_idx),
        "epochs_run": len(hist["loss"]),
        "best_epoch": best + 1,
        "best_at_epoch": {k: v[best] for k, v in hist.items()},
        "evaluate_best_model": {s: {k: float(v) for k, v in d.items()}
                                for s, d in evaluation.items()},
        "train_seconds": round(train_time, 1),
        "seconds_per_epoch": round(train_time / max(len(hist["loss"]), 1), 2),
        "history": hist,
    }
    atomic_write_json(run_dir / "train_summary.json", summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crater_resunet.train",
        description="Train the crater ResNet-UNet (Keras 3) on a YOLO-layout data set "
                    "(<data>/{train,valid}/{images,labels}).")
    parser.add_argument("--config", default="quick",
                        help="profile name in crater_resunet/configs (quick, paper) or a YAML "
                             "path (default: quick)")
    parser.add_argument("--data", type=Path, help="data root (overrides data.root)")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/crater_resunet/"
                                                 "<profile>)")
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument("--base-filters", type=int, help="override model.base_filters "
                                                         "(64 = the paper)")
    parser.add_argument("--image-size", type=int, help="square model input size (multiple of "
                                                       "32)")
    parser.add_argument("--mask-shape", choices=["box", "ellipse"], help="mask from boxes: "
                        "filled box (paper) or inscribed ellipse")
    parser.add_argument("--lr", type=float, help="override train.learning_rate")
    parser.add_argument("--seed", type=int, help="override the seed")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="seeded flips/rotations of training tiles")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)),
                        help="CPU threads (default: $OMP_NUM_THREADS or 2)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch Keras output")
    return parser


def apply_overrides(cfg: dict, args) -> dict:
    for value, section, key in ((args.epochs, "train", "epochs"),
                                (args.batch_size, "train", "batch_size"),
                                (args.lr, "train", "learning_rate"),
                                (args.base_filters, "model", "base_filters"),
                                (args.mask_shape, "data", "mask_shape"),
                                (args.augment, "data", "augment")):
        if value is not None:
            cfg[section][key] = value
    if args.image_size is not None:
        cfg["data"]["image_size"] = [args.image_size, args.image_size]
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.data is not None:
        cfg["data"]["root"] = str(args.data)
    return cfg


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from crater_resunet.config import ConfigError, data_root, load_config

    try:
        cfg = apply_overrides(load_config(args.config), args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, v in (("--epochs", cfg["train"]["epochs"]), ("--batch-size",
                    cfg["train"]["batch_size"]), ("--base-filters", cfg["model"]["base_filters"])):
        if int(v) < 1:
            print(f"error: {name} must be >= 1, got {v}", file=sys.stderr)
            return 2
    if any(int(s) % 32 for s in cfg["data"]["image_size"]):
        print(f"error: image size must be a multiple of 32, got {cfg['data']['image_size']}",
              file=sys.stderr)
        return 2
    root = data_root(cfg)
    if not (root / "train" / "images").is_dir() or not (root / "valid" / "images").is_dir():
        print(f"error: {root}: expected a YOLO layout with train/images and valid/images "
              "(for the quick profile run `python -m crater_resunet.prepare_pycda` first)",
              file=sys.stderr)
        return 2
    run_dir = args.out or REPO_ROOT / "runs" / "crater_resunet" / str(cfg.get("profile", "run"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from crater_resunet.data import LabelError

    try:
        summary = run_training(cfg, run_dir, root, verbose=0 if args.quiet else 2,
                               threads=args.threads)
    except (LabelError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    v = summary["evaluate_best_model"]["valid"]
    print(f"best epoch {summary['best_epoch']}/{summary['epochs_run']}: valid loss "
          f"{v['loss']:.4f}, dice (thresholded) {v['dice_t']:.4f}, dice (soft) "
          f"{v['dice_coefficient']:.4f}; model: {run_dir / 'model.keras'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
