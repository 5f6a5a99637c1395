"""Train the crater ResNet-UNet on a YOLO-layout data set (Keras 3; TensorFlow by default).

    python -m crater_resunet.train --config quick --run-dir runs/crater_resunet/quick
    python -m crater_resunet.train --config paper --set data.root=/data/LU3M6TGT_yolo_format
    python -m crater_resunet.train --run-dir runs/crater_resunet/quick --resume

The recipe (the notebook's): loss 0.5 BCE + 0.5 (1 - Dice), AdamW, early stopping on the
validation loss (best weights restored at the end), reduce-on-plateau. It follows the shared
run contract (``shared/runs.py``): the run folder holds ``config.yaml``, ``history.csv`` (one
row per epoch), ``train.log``, ``last.keras`` + ``state.json`` (weights, optimiser state and the
callbacks' counters after the last finished epoch), ``best.keras`` (lowest validation loss) and
``summary.json``. Epoch ``k`` shuffles and augments from seeds derived from (seed, k), so a run
resumed after SIGINT/SIGTERM (which abandons the unfinished epoch and exits 130/143) ends with
the weights and history of an uninterrupted one. The model is built and compiled inside a
``tf.distribute`` strategy scope (MirroredStrategy with several GPUs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crater_resunet.config import PROFILES
from shared.configs import REPO_ROOT, cli_path, resolve_path
from shared.errors import UserError  # noqa: F401 (reproduce)
from shared.runs import default_threads, resolve_run_threads  # noqa: F401 (reproduce)

LAST, BEST, STATE = "last.keras", "best.keras", "state.json"
CALLBACK_FIELDS = {"early_stopping": ("wait", "best", "best_epoch", "stopped_epoch"),
                   "reduce_lr": ("wait", "best", "cooldown_counter")}


def _strategy():
    """MirroredStrategy on several GPUs, else the default strategy (TF backend only)."""
    import contextlib

    import keras

    if keras.backend.backend() != "tensorflow":
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


def data_root_of(cfg: dict) -> Path:
    """``data.root`` by the one path rule (``shared.configs.resolve_path``)."""
    return resolve_path(cfg["data"]["root"])


def validate(cfg: dict) -> Path:
    """The subproject's own checks of a resolved config; returns the data root."""
    from crater_resunet.data import check_augmentation

    for name, v in (("train.epochs", cfg["train"]["epochs"]),
                    ("train.batch_size", cfg["train"]["batch_size"]),
                    ("model.base_filters", cfg["model"]["base_filters"])):
        if not isinstance(v, int) or v < 1:
            raise UserError(f"{name} must be an integer >= 1, got {v!r}")
    size = cfg["data"]["image_size"]
    if not isinstance(size, list) or len(size) != 2 or any(int(s) % 32 for s in size):
        raise UserError(f"data.image_size must be [h, w], multiples of 32, got {size!r}")
    if cfg["data"]["mask_shape"] not in ("box", "ellipse"):
        raise UserError("data.mask_shape must be box or ellipse, got "
                        f"{cfg['data']['mask_shape']!r}")
    try:
        check_augmentation(cfg["data"].get("augmentation"))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    root = data_root_of(cfg)
    if not (root / "train" / "images").is_dir() or not (root / "valid" / "images").is_dir():
        raise UserError(f"{root}: expected a YOLO layout with train/images and valid/images "
                        "(for the quick profile run `python -m crater_resunet.prepare_pycda` "
                        "first)")
    return root


def resolve_run_precision(cfg: dict) -> dict:
    """``train.precision`` resolved for this machine (``auto`` -> ``bf16`` where the CPU has
    native bf16, else ``fp32``; ``shared.precision``), so config.yaml records what ran."""
    import copy

    from shared.precision import resolve_precision

    cfg = copy.deepcopy(cfg)
    try:
        cfg["train"]["precision"] = resolve_precision(cfg["train"].get("precision", "fp32"),
                                                      _device_kind())
    except ValueError as exc:
        raise UserError(f"train.precision: {exc}") from None
    return cfg


def _device_kind() -> str:
    """``cuda`` when TensorFlow sees a GPU (checked only once TensorFlow is imported)."""
    tf = sys.modules.get("tensorflow")
    return "cuda" if tf is not None and tf.config.list_physical_devices("GPU") else "cpu"


# ------------------------------------------------------------------------------ the recipe
@dataclass
class Recipe:
    """Everything a training run needs, built from the config."""

    cfg: dict
    root: Path
    train_idx: Any
    valid_idx: Any
    train_labels: list
    valid_labels: list
    train_base: Any
    valid_ds: Any
    model: Any
    strategy: Any
    callbacks: dict


def build(cfg: dict, root: Path) -> Recipe:
    """Data (checked image by image), model, optimiser, early stopping and reduce-on-plateau."""
    import keras

    from crater_resunet.data import (
        base_dataset,
        check_images,
        epoch_batches,
        index_split,
        load_labels,
    )
    from crater_resunet.model import build_resunet, compile_model, set_precision
    from shared.seed import seed_everything

    dcfg, mcfg, tcfg = cfg["data"], cfg["model"], cfg["train"]
    seed_everything(int(cfg["seed"]), deterministic=bool(tcfg.get("deterministic", False)))
    size = tuple(int(v) for v in dcfg["image_size"])
    train_idx, valid_idx = index_split(root, "train"), index_split(root, "valid")
    for idx in (train_idx, valid_idx):
        check_images(idx)
    train_labels, valid_labels = load_labels(train_idx), load_labels(valid_idx)
    common = dict(image_size=size, mask_shape=dcfg["mask_shape"],
                  channel_order=dcfg["channel_order"], cache=bool(dcfg.get("cache", False)))
    train_base = base_dataset(train_idx, labels=train_labels, **common)
    valid_ds = epoch_batches(base_dataset(valid_idx, labels=valid_labels, **common),
                             len(valid_idx), int(tcfg["batch_size"]))
    set_precision(tcfg.get("precision", "fp32"))
    strategy, scope = _strategy()
    with scope:
        model = build_resunet((*size, 3), int(mcfg["base_filters"]),
                              bn_momentum=float(mcfg.get("bn_momentum", 0.99)))
        compile_model(model, float(tcfg["learning_rate"]), float(tcfg["weight_decay"]),
                      float(tcfg["threshold"]), jit_compile=tcfg.get("jit_compile", "auto"),
                      run_eagerly=bool(tcfg.get("run_eagerly", False)))
    callbacks = {
        "early_stopping": keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=int(tcfg["early_stopping_patience"]), verbose=1),
        "reduce_lr": keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=float(tcfg["reduce_lr_factor"]),
            patience=int(tcfg["reduce_lr_patience"]), min_lr=float(tcfg["min_lr"]), verbose=1),
    }
    for cb in callbacks.values():
        cb.set_model(model)
        cb.on_train_begin()
    return Recipe(cfg, root, train_idx, valid_idx, train_labels, valid_labels, train_base,
                  valid_ds, model, strategy, callbacks)


def epoch_data(r: Recipe, epoch: int):
    """The training batches of ``epoch``: order and augmentation from (seed, epoch)."""
    from crater_resunet.data import epoch_batches
    from shared.runs import derive_seed

    seed = int(r.cfg["seed"])
    augment = bool(r.cfg["data"].get("augment", False))
    return epoch_batches(r.train_base, len(r.train_idx), int(r.cfg["train"]["batch_size"]),
                         shuffle_seed=derive_seed(seed, "shuffle", epoch),
                         augment_seed=derive_seed(seed, "augment", epoch) if augment else None,
                         augmentation=r.cfg["data"].get("augmentation"))


def _stop_check(stop):
    import keras

    class StopCheck(keras.callbacks.Callback):
        """Ends the epoch at the next batch once SIGINT/SIGTERM arrived."""

        def on_train_batch_end(self, batch, logs=None):
            if stop.requested:
                self.model.stop_training = True

    return StopCheck()


def train_one_epoch(r: Recipe, epoch: int, stop, verbose: int = 2, extra=()) -> dict | None:
    """One epoch of training and validation; ``None`` when a stop signal cut it short (its
    partial updates are then never saved: the resume repeats the epoch)."""
    lr = float(r.model.optimizer.learning_rate)
    hist = r.model.fit(epoch_data(r, epoch), validation_data=r.valid_ds, epochs=1,
                       verbose=verbose, shuffle=False, callbacks=[_stop_check(stop), *extra])
    if stop.requested:
        return None
    logs = {k: float(v[-1]) for k, v in hist.history.items()}
    logs["learning_rate"] = lr
    for cb in r.callbacks.values():  # may lower the learning rate and request the stop
        cb.on_epoch_end(epoch, logs)
    return logs


def evaluate(r: Recipe) -> dict:
    """Keras evaluation of the current model on both splits (no augmentation, file order)."""
    from crater_resunet.data import base_dataset, epoch_batches

    dcfg = r.cfg["data"]
    out = {}
    for split, idx, labels in (("train", r.train_idx, r.train_labels),
                               ("valid", r.valid_idx, r.valid_labels)):
        ds = epoch_batches(base_dataset(idx, tuple(dcfg["image_size"]), dcfg["mask_shape"],
                                        False, dcfg["channel_order"], labels),
                           len(idx), int(r.cfg["train"]["batch_size"]))
        res = r.model.evaluate(ds, verbose=0, return_dict=True)
        out[split] = {k: float(v) for k, v in res.items()}
    return out


# ------------------------------------------------------------------------------ state
def save_state(run, r: Recipe, state: dict) -> None:
    """``last.keras`` (weights and optimiser state) then ``state.json``, both atomically."""
    from crater_resunet.model import save_model
    from shared.atomic import atomic_files, atomic_write_json

    state = dict(state, callbacks={
        name: {f: _finite(getattr(r.callbacks[name], f)) for f in fields}
        for name, fields in CALLBACK_FIELDS.items()})
    with atomic_files(run.path, "last", [LAST, STATE]) as tmp:  # one unit (issue 27)
        save_model(r.model, tmp[LAST])
        atomic_write_json(tmp[STATE], state)


def load_state(run, r: Recipe) -> dict:
    """Restore the model, optimiser and callbacks from ``last.keras`` + ``state.json``."""
    import json
    import zipfile

    from shared.atomic import checked_files

    path = run.file(STATE)
    try:
        checked_files(run.path, "last", [LAST, STATE])  # completes or refuses a killed save
        state = json.loads(path.read_text(encoding="utf-8"))
        r.model.optimizer.build(r.model.trainable_variables)
        r.model.load_weights(run.file(LAST))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path} / {run.file(LAST)}: cannot resume from this state ({first})") \
            from None
    for name, fields in state["callbacks"].items():
        for f in fields:
            v = fields[f]
            if v is None:  # an infinite or unset best: the callback's own starting value
                v = None if name == "early_stopping" else float("inf")
            setattr(r.callbacks[name], f, v)
    r.model.optimizer.learning_rate.assign(state["learning_rate"])
    return state


def _shown(path: Path) -> str:
    """A path as a record shows it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _finite(v):
    v = float(v) if v is not None else None
    return None if v is None or v in (float("inf"), float("-inf")) else v


# ------------------------------------------------------------------------------ the run
def run(cfg: dict, run_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
        verbose: int = 2, threads: int | None = None, extra_callbacks=()) -> dict:
    """Train with a resolved config into ``run_dir`` (the run contract); return the summary."""
    from shared.runs import GracefulStop, RunDir

    root = validate(cfg)
    cfg = resolve_run_precision(resolve_run_threads(cfg, threads))
    run_folder, cfg = RunDir.open(run_dir, cfg, resume=resume, overwrite=overwrite,
                                  inputs=[root])
    with run_folder as rd, GracefulStop() as stop:
        log = rd.logger("crater_resunet.train")
        set_threads(int(cfg["train"]["threads"]))
        r = build(cfg, root)
        state = {"epoch": 0, "train_seconds": 0.0, "stopped": False, "best_val_loss": None,
                 "best_epoch": None}
        if resume and rd.file(STATE).is_file():
            state = load_state(rd, r)
            log.info(f"resuming after epoch {state['epoch']} from {rd.file(LAST)}")
        rd.truncate_history(lambda row: int(row["epoch"]) <= state["epoch"])
        _log_model(log, r)
        while state["epoch"] < int(cfg["train"]["epochs"]) and not state["stopped"]:
            t0 = time.time()
            logs = train_one_epoch(r, state["epoch"], stop, verbose, extra_callbacks)
            if logs is None:
                stop.raise_if_requested(rd.path)
            state = _after_epoch(rd, r, state, logs, time.time() - t0, log)
            stop.raise_if_requested(rd.path)
        return _finish(rd, r, state, log)


def _log_model(log, r: Recipe) -> None:
    from crater_resunet.model import count_params

    total, trainable = count_params(r.model)
    log.info(f"model: base_filters={r.cfg['model']['base_filters']}, {total:,} parameters "
             f"({trainable:,} trainable); {len(r.train_idx)} train / {len(r.valid_idx)} valid "
             f"images from {r.root}")


def _after_epoch(rd, r: Recipe, state: dict, logs: dict, seconds: float, log) -> dict:
    """Best checkpoint, history row, resumable state, log line."""
    from crater_resunet.model import save_model

    epoch = state["epoch"] + 1
    best = state["best_val_loss"]
    if best is None or logs["val_loss"] < best:
        save_model(r.model, rd.file(BEST))
        state = dict(state, best_val_loss=logs["val_loss"], best_epoch=epoch)
    rd.append_history({"epoch": epoch, **logs})
    state = dict(state, epoch=epoch, train_seconds=state["train_seconds"] + seconds,
                 stopped=bool(r.model.stop_training),
                 learning_rate=float(r.model.optimizer.learning_rate))
    save_state(rd, r, state)
    log.info(f"epoch {epoch}: loss {logs['loss']:.4f} val_loss {logs['val_loss']:.4f} "
             f"val_dice_t {logs.get('val_dice_t', float('nan')):.4f} lr {logs['learning_rate']:.2e}"
             f" ({seconds:.1f} s)" + (" - early stop" if state["stopped"] else ""))
    return state


def _finish(rd, r: Recipe, state: dict, log) -> dict:
    """Best weights restored (as the notebook's EarlyStopping does), evaluation, summary."""
    import keras

    from crater_resunet.model import count_params
    from shared.results import machine_info
    from shared.runs import code_version

    r.model.load_weights(rd.file(BEST))
    rows = rd.read_history()
    hist = {k: [float(row[k]) for row in rows] for k in rows[0] if k != "epoch"}
    best = state["best_epoch"] - 1
    total, trainable = count_params(r.model)
    summary = {
        "profile": r.cfg.get("profile"), "data_root": _shown(r.root),
        "code_version": code_version(Path(__file__).parent),
        "backend": keras.backend.backend(),
        "precision": r.cfg["train"].get("precision", "fp32"),
        "machine": machine_info(),
        "replicas": getattr(r.strategy, "num_replicas_in_sync", 1) if r.strategy else 1,
        "base_filters": int(r.cfg["model"]["base_filters"]),
        "image_size": list(r.cfg["data"]["image_size"]),
        "params_total": total, "params_trainable": trainable,
        "train_images": len(r.train_idx), "valid_images": len(r.valid_idx),
        "epochs_run": len(rows), "best_epoch": best + 1,
        "best_at_epoch": {k: v[best] for k, v in hist.items()},
        "evaluate_best_model": evaluate(r),
        "train_seconds": round(state["train_seconds"], 1),
        "seconds_per_epoch": round(state["train_seconds"] / max(len(rows), 1), 2),
        "history": hist,
    }
    rd.write_summary(summary)
    v = summary["evaluate_best_model"]["valid"]
    log.info(f"best epoch {best + 1}/{len(rows)}: valid loss {v['loss']:.4f}, dice "
             f"(thresholded) {v['dice_t']:.4f}, dice (soft) {v['dice_coefficient']:.4f}; "
             f"model: {rd.file(BEST)}")
    return summary


# ------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    from shared.cli import add_progress_argument, finish_parser
    from shared.runs import add_run_arguments, positive_int

    parser = argparse.ArgumentParser(
        prog="craters-train",
        description="Train the crater ResNet-UNet (Keras 3) on a YOLO-layout data set "
                    "(<data>/{train,valid}/{images,labels}) following the shared run contract.")
    add_run_arguments(parser, default_config="quick", run_dir_aliases=("--out",))
    parser.add_argument("--data", type=Path,
                        help="data root, from the current folder (--set data.root=... is taken "
                             "from the repository root)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads, kept in the run config (same as --set "
                             "train.threads=N; default: the config's, else $OMP_NUM_THREADS "
                             "or 2)")
    add_progress_argument(parser, aliases=("--quiet",))
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                        help="arithmetic (same as --set train.precision=...): auto = bf16 "
                             "(mixed_bfloat16) on a CPU with native bf16, else fp32 (default: "
                             "the profile's train.precision: auto in quick, fp32 in paper)")
    return finish_parser(parser, set_example="train.epochs=3")


def main(argv=None) -> int:
    from shared.runs import run_config

    args = build_parser().parse_args(argv)
    if args.data is not None:
        args.overrides = [*args.overrides, f"data.root={cli_path(args.data)}"]
    if args.precision is not None:
        args.overrides = [*args.overrides, f"train.precision={args.precision}"]
    if args.threads is not None:
        args.overrides = [*args.overrides, f"train.threads={args.threads}"]
    cfg = run_config(args, PROFILES)
    run_dir = args.run_dir or REPO_ROOT / "runs" / "crater_resunet" / str(cfg.get("profile", "run"))
    from shared.cli import progress_enabled
    from shared.runs import quiet_tensorflow

    quiet_tensorflow()
    run(cfg, run_dir, resume=args.resume, overwrite=args.overwrite,
        verbose=2 if progress_enabled(args.no_progress) else 0)
    return 0


def cli(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
