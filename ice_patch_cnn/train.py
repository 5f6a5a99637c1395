"""Train the chunk classifier (binary cross-entropy, Adam, batch 25, 20 % random validation).

Data: a folder with ``1/`` (chunks showing a small ice patch) and ``0/`` (none), or an index
CSV with columns ``file`` (relative to the CSV's folder) and ``label`` (1/0; rows labelled -1 or
``hard`` are left out, like the paper's 252 hard chunks). The validation split is a random 20 %
from the seed, so a resumed run sees the same split.

Outputs in ``--out`` (default ``runs/ice_patch_cnn/<profile>``): ``best.keras`` (lowest
``val_loss`` so far, safe-mode loadable), ``last.keras`` (for ``--resume``), ``history.csv``
(one row per epoch, numbered across resumed runs), ``training_curves.png`` (loss and accuracy
per epoch, like the paper's Figure 3), ``state.json`` and ``train_summary.json``.

``--resume`` continues from ``last.keras`` for ``--epochs`` more epochs (the paper's second run:
48 more), keeping the epoch count, the optimizer state and the best ``val_loss`` so far.
Works under ``KERAS_BACKEND=tensorflow`` (``tf.data`` pipeline) and ``KERAS_BACKEND=torch``
(a ``keras.utils.PyDataset`` reading the same files).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HISTORY_FIELDS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]


class DataError(ValueError):
    """Training data that is missing or malformed; the message names the file."""


# --------------------------------------------------------------------------- samples

def read_samples(source: str | os.PathLike) -> tuple[list[str], np.ndarray, int]:
    """(files, labels, n_hard_left_out) from a ``1/``+``0/`` folder or an index CSV."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: not found")
    files: list[str] = []
    labels: list[int] = []
    hard = 0
    if source.is_dir():
        for label in (0, 1):
            folder = source / str(label)
            if not folder.is_dir():
                raise DataError(f"{source}: expected sub-folders 0/ and 1/ (missing {folder})")
            found = sorted(p for p in folder.iterdir()
                           if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"))
            files += [str(p) for p in found]
            labels += [label] * len(found)
    else:
        with open(source, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
                raise DataError(f"{source}: expected CSV columns 'file' and 'label'")
            for i, row in enumerate(reader, start=2):
                value = row["label"].strip().lower()
                if value in ("-1", "hard"):
                    hard += 1
                    continue
                if value not in ("0", "1"):
                    raise DataError(f"{source}: line {i}: label must be 0, 1, -1 or hard, "
                                    f"got {row['label']!r}")
                path = Path(row["file"])
                files.append(str(path if path.is_absolute() else source.parent / path))
                labels.append(int(value))
    if not files:
        raise DataError(f"{source}: no training chunks found")
    missing = [f for f in files[:1000] if not Path(f).is_file()]
    if missing:
        raise DataError(f"{missing[0]}: chunk file not found (listed in {source})")
    return files, np.asarray(labels, dtype=np.int64), hard


def split_indices(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random ``val_split`` share for validation (at least one sample each when n >= 2)."""
    if not 0.0 < val_split < 1.0:
        raise ValueError(f"val_split must be in (0, 1), got {val_split}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, int(round(n * val_split))), n - 1) if n >= 2 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights, normalised so that the mean sample weight is 1."""
    n = labels.size
    out = {}
    for c in (0, 1):
        k = int((labels == c).sum())
        out[c] = float(n / (2 * k)) if k else 1.0
    return out


def _load_png(path: str, size: int) -> np.ndarray:
    from shared.images import read_image

    arr = read_image(path, mode="L")
    if arr.shape != (size, size):
        raise DataError(f"{path}: chunk is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size}")
    return arr


def make_dataset(files: Sequence[str], labels: np.ndarray | None, size: int, batch_size: int,
                 shuffle: bool = False, seed: int = 0, cache: bool = False):
    """Batches of (chunk, label) as float32 (N, size, size, 1) in 0..255.

    TensorFlow backend: a ``tf.data`` pipeline (parallel PNG decoding, prefetch); other
    backends: a ``keras.utils.PyDataset``.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def load(path, label):
            img = tf.io.decode_image(tf.io.read_file(path), channels=1, expand_animations=False)
            img = tf.ensure_shape(img, (size, size, 1))
            return tf.cast(img, tf.float32), label

        y = (np.zeros(len(files)) if labels is None else labels).astype("float32")[:, None]
        ds = tf.data.Dataset.from_tensor_slices((list(files), y))
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            ds = ds.cache()
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return _ChunkSequence(files, labels, size, batch_size, shuffle, seed)


def _ChunkSequence(files, labels, size, batch_size, shuffle, seed):  # noqa: N802
    """A ``keras.utils.PyDataset`` over chunk files (keras is imported on use only)."""
    import keras

    class ChunkSequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.files = list(files)
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(self.files))
            if shuffle:
                self.rng.shuffle(self.order)

        def __len__(self):
            return math.ceil(len(self.files) / batch_size)

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            x = np.stack([_load_png(self.files[j], size) for j in idx])[..., None]
            y = np.zeros(len(idx)) if labels is None else labels[idx]
            return x.astype("float32"), y.astype("float32")[:, None]

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

    return ChunkSequence()


# --------------------------------------------------------------------------- outputs

def _history_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write_history(path: Path, rows: list[dict]) -> None:
    from shared.atomic import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def plot_curves(history: list[dict], path: Path, best_epoch: int | None = None,
                title: str = "") -> None:
    """Loss and accuracy per epoch (training and validation), like the paper's Figure 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.atomic import atomic_path

    ep = [int(r["epoch"]) for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        ax.plot(ep, [float(r[key]) for r in history], "o-", ms=3, label=label)
        ax.plot(ep, [float(r[f"val_{key}"]) for r in history], "s-", ms=3, label=f"val_{label}")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _checkpoint_callback(out: Path, state: dict, history: list[dict]):
    import keras

    from shared.atomic import atomic_path, atomic_write_json

    class Checkpoint(keras.callbacks.Callback):
        """After each epoch: last.keras, best.keras (by val_loss), history.csv, state.json."""

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            number = epoch + 1
            row = {"epoch": number, "seconds": round(time.time() - self._t0, 1)}
            for key in HISTORY_FIELDS[1:-1]:
                row[key] = float(logs.get(key, float("nan")))
            history.append(row)
            with atomic_path(out / "last.keras") as tmp:
                self.model.save(tmp)
            val = row["val_loss"]
            if np.isfinite(val) and val < state.get("best_val_loss", float("inf")):
                with atomic_path(out / "best.keras") as tmp:
                    self.model.save(tmp)
                state.update(best_val_loss=val, best_epoch=number,
                             best_val_accuracy=row["val_accuracy"])
            state["epochs_done"] = number
            _write_history(out / "history.csv", history)
            atomic_write_json(out / "state.json", state)

    return Checkpoint()


# --------------------------------------------------------------------------- training

def _seed(seed: int) -> None:
    """``shared.seed_everything`` under TensorFlow; without it for other backends, because
    ``keras.utils.set_random_seed`` (which it calls) imports TensorFlow whenever installed."""
    import keras

    from shared.seed import seed_everything

    if keras.backend.backend() == "tensorflow":
        seed_everything(seed)
        return
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)
    try:  # the seed keras.random.SeedGenerator falls back to (what set_random_seed sets)
        from keras.src.backend.common import global_state

        global_state.set_global_attribute("global_random_seed", seed)
    except ImportError:
        pass


def train(cfg: dict, data: str | os.PathLike, out: str | os.PathLike, *, epochs: int | None = None,
          resume: bool = False, seed: int | None = None, threads: int = 2,
          progress: bool = True) -> dict:
    """Train (or resume) and return the summary dict (also written to train_summary.json)."""
    import keras

    from ice_patch_cnn.model import compile_model, load_model, model_from_config
    from shared.atomic import atomic_write_json

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
        except RuntimeError:
            pass  # TensorFlow already ran something in this process: keep its setting
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(int(threads))
    tcfg = cfg["train"]
    seed = int(cfg.get("seed", 0) if seed is None else seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = int(cfg["data"]["chunk_size"])
    files, labels, n_hard = read_samples(data)
    train_idx, val_idx = split_indices(len(files), float(cfg["data"].get("val_split", 0.2)), seed)
    n_pos = int(labels.sum())
    share = n_pos / labels.size
    print(f"{labels.size} chunks ({n_pos} with ice, {share:.1%}; {n_hard} hard left out): "
          f"{train_idx.size} training, {val_idx.size} validation")
    weights = class_weights(labels[train_idx]) if tcfg.get("class_weight") else None
    if weights:
        print(f"class weights: {weights}")

    state_path = out / "state.json"
    history: list[dict] = []
    if resume:
        last = out / "last.keras"
        if not last.is_file() or not state_path.is_file():
            raise DataError(f"{out}: nothing to resume (last.keras/state.json missing)")
        state = json.loads(state_path.read_text(encoding="utf-8"))
        history = _history_rows(out / "history.csv")[: int(state["epochs_done"])]
        _seed(seed + int(state["epochs_done"]))
        model = load_model(last, compile=True)
        initial = int(state["epochs_done"])
        more = int(epochs if epochs is not None else tcfg.get("resume_epochs", 48))
    else:
        _seed(seed)
        model = compile_model(model_from_config(cfg, size),
                              float(tcfg.get("learning_rate", 1e-3)))
        state = {"epochs_done": 0, "best_val_loss": float("inf"), "best_epoch": None,
                 "profile": cfg.get("profile"), "seed": seed}
        initial = 0
        more = int(epochs if epochs is not None else tcfg.get("epochs", 25))
    if more < 1:
        raise ValueError(f"epochs must be >= 1, got {more}")
    if tcfg.get("run_eagerly"):
        model.run_eagerly = True  # no graph tracing: only worth it for tiny test models
    batch = int(tcfg.get("batch_size", 25))
    cache = bool(tcfg.get("cache", False))
    f_arr = np.asarray(files)
    ds_train = make_dataset(f_arr[train_idx], labels[train_idx], size, batch, shuffle=True,
                            seed=seed + initial, cache=cache)
    ds_val = make_dataset(f_arr[val_idx], labels[val_idx], size, batch, cache=cache)
    t0 = time.time()
    model.fit(ds_train, validation_data=ds_val, epochs=initial + more, initial_epoch=initial,
              class_weight=weights, verbose=2 if progress else 0,
              callbacks=[_checkpoint_callback(out, state, history)])
    wall = time.time() - t0
    plot_curves(history, out / "training_curves.png", state.get("best_epoch"),
                title=f"ice_patch_cnn ({cfg.get('profile', '?')} profile)")
    summary = {
        "profile": cfg.get("profile"), "backend": keras.backend.backend(), "seed": seed,
        "data": str(data), "chunks": int(labels.size), "positives": n_pos,
        "positive_share": round(share, 4), "hard_left_out": n_hard,
        "train_chunks": int(train_idx.size), "val_chunks": int(val_idx.size),
        "class_weight": weights, "parameters": int(model.count_params()),
        "epochs_done": state["epochs_done"], "epochs_this_run": more,
        "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"],
        "best_val_accuracy": state.get("best_val_accuracy"),
        "train_seconds_this_run": round(wall, 1),
    }
    atomic_write_json(out / "train_summary.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train the Xception chunk classifier (paper: batch 25, 25 epochs, then "
                    "--resume for 48 more). Data: a folder with 1/ and 0/ or an index CSV "
                    "(file,label).")
    parser.add_argument("--data", required=True, help="folder with 1/ and 0/, or index CSV")
    parser.add_argument("--config", default="paper", help="profile: paper, quick or a YAML path")
    parser.add_argument("--out", type=Path,
                        help="run folder (default runs/ice_patch_cnn/<profile>)")
    parser.add_argument("--epochs", type=int,
                        help="epochs to run now (default: train.epochs, or train.resume_epochs "
                             "with --resume)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>/last.keras, keeping the epoch count")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument("--lr", type=float, help="override train.learning_rate")
    parser.add_argument("--class-weight", action=argparse.BooleanOptionalAction, default=None,
                        help="weight the classes by inverse frequency")
    parser.add_argument("--chunk-size", type=int, help="override data.chunk_size")
    parser.add_argument("--seed", type=int, help="override the profile's seed")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from ice_patch_cnn.config import ConfigError, load_config, repo_path

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.batch_size is not None:
        cfg["train"]["batch_size"] = args.batch_size
    if args.lr is not None:
        cfg["train"]["learning_rate"] = args.lr
    if args.class_weight is not None:
        cfg["train"]["class_weight"] = args.class_weight
    if args.chunk_size is not None:
        cfg["data"]["chunk_size"] = args.chunk_size
    out = args.out or repo_path(f"runs/ice_patch_cnn/{cfg.get('profile', 'run')}")
    try:
        summary = train(cfg, args.data, out, epochs=args.epochs, resume=args.resume,
                        seed=args.seed, threads=args.threads, progress=not args.quiet)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"best epoch {summary['best_epoch']}: val_loss {summary['best_val_loss']:.4f}, "
          f"val_accuracy {summary['best_val_accuracy']:.4f}; model: {Path(out) / 'best.keras'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
