"""Train the chunk classifier (binary cross-entropy, Adam, batch 25, 20 % validation split).

The recipe follows the Keras example the paper cites ("image classification from scratch"):
``build`` (the chunk list and its split), ``sequences`` (a ``keras.utils.PyDataset`` for each
side, ``data/sequence.py``), ``new_model`` (``model.compile``) or ``load_state``, and ``fit``:
one ``model.fit`` call with the callbacks of ``callbacks.py`` and Keras' own ``ModelCheckpoint``
(``best.keras``) and ``CSVLogger`` (``history.csv``); ``run(cfg, run_dir)`` puts them together.

Data: ``data.root`` (``--data DIR`` is ``--set data.root=DIR``; a relative ``data.root`` in a
profile or ``--set`` is taken from the repository root, ``shared.configs.resolve_path``): a
folder with ``1/`` (chunks showing a small ice patch) and ``0/`` (none), or an index CSV (or a
folder holding ``index.csv``) with columns ``file`` (relative to the CSV's folder) and
``label`` (1/0; rows labelled -1 or ``hard`` are left out, like the paper's 252 hard chunks).
Chunks are 8-bit grayscale PNGs of the profile's ``data.chunk_size`` (what ``chunk.py``
writes); a 16-bit, truncated or wrong-sized file is a one-line error naming it. The validation
share (``data.val_split``, 20 %) is chosen by a hash of each chunk's *file name*, not by a
permutation: when the data set grows (the paper's retraining, 6,240 -> 18,646 chunks) every
old chunk stays on its side.

Run folder (``--run-dir``, alias ``--out``; the contract of ``shared.runs``): ``config.yaml``
(with the data's absolute path in ``data.root``), ``history.csv`` (one row per epoch),
``train.log``, ``last.keras`` (with the optimiser state) + ``state.json`` (the resume point,
written as one unit after every epoch), ``best.keras`` (lowest ``val_loss``; safe-mode
loadable), ``training_curves.png`` (like the paper's Figure 3) and ``summary.json`` when the run
reached its epoch target. A used folder is refused without ``--resume``/``--overwrite``; a lock
refuses a second run in it. SIGINT/SIGTERM stop after the current batch (exit 130/143);
``--resume`` restarts the interrupted epoch from the last epoch's checkpoint and ends with the
same weights and history as an uninterrupted run: the epoch's shuffle and the dropout state
derive from the seed and the epoch, and the optimiser state is in ``last.keras``.

``--resume`` continues to the run's epoch target; ``--resume --epochs N`` trains N epochs more
(the paper's second run: 48 more), on an enlarged ``--data`` if given. When the data changed,
the best validation loss so far is re-measured on the new validation set before comparing.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.configs import cli_path, resolve_path
from shared.errors import UserError  # noqa: F401 (reproduce)
from shared.runs import default_threads, resolve_run_threads  # noqa: F401 (reproduce)

CHUNK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
BEST_PENDING = "best.pending.keras"  # ModelCheckpoint writes here; renamed onto best.keras


class DataError(UserError):
    """Training data that is missing or malformed; the message names the file."""


# --------------------------------------------------------------------------- samples

def read_samples(source: str | os.PathLike) -> tuple[list[str], np.ndarray, int]:
    """(files, labels, n_hard_left_out) from a ``1/``+``0/`` folder or an index CSV."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: not found")
    if source.is_dir() and not (source / "1").is_dir() and (source / "index.csv").is_file():
        source = source / "index.csv"
    if source.is_dir():
        files, labels, hard = _samples_from_folders(source)
    else:
        files, labels, hard = _samples_from_csv(source)
    if not files:
        raise DataError(f"{source}: no training chunks found")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataError(f"{missing[0]}: chunk file not found (listed in {source})")
    return files, np.asarray(labels, dtype=np.int64), hard


def _samples_from_folders(source: Path) -> tuple[list[str], list[int], int]:
    files: list[str] = []
    labels: list[int] = []
    for label in (0, 1):
        folder = source / str(label)
        if not folder.is_dir():
            raise DataError(f"{source}: expected sub-folders 0/ and 1/ (missing {folder})")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in CHUNK_SUFFIXES)
        files += [str(p) for p in found]
        labels += [label] * len(found)
    return files, labels, 0


def _samples_from_csv(source: Path) -> tuple[list[str], list[int], int]:
    files: list[str] = []
    labels: list[int] = []
    hard = 0
    try:
        with open(source, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
                raise DataError(f"{source}: expected CSV columns 'file' and 'label'")
            for i, row in enumerate(reader, start=2):
                value = (row["label"] or "").strip().lower()
                if value in ("-1", "hard"):
                    hard += 1
                    continue
                if value not in ("0", "1"):
                    raise DataError(f"{source}: line {i}: label must be 0, 1, -1 or hard, "
                                    f"got {row['label']!r}")
                path = Path(row["file"] or "")
                files.append(str(path if path.is_absolute() else source.parent / path))
                labels.append(int(value))
    except UnicodeDecodeError:
        raise DataError(f"{source}: not a UTF-8 text CSV") from None
    return files, labels, hard


def name_share(path: str | os.PathLike) -> float:
    """A number in [0, 1) from the SHA-256 of the file *name*: the chunk's place in the split."""
    digest = hashlib.sha256(Path(path).name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_name(files: Sequence[str], val_split: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: a chunk is in validation when ``name_share < val_split``.

    A chunk's side depends only on its file name, so adding chunks never moves old ones. With
    at least two chunks, each side gets at least one (the chunk nearest the boundary moves).
    """
    if not 0.0 < val_split < 1.0:
        raise DataError(f"data.val_split must be in (0, 1), got {val_split}")
    shares = np.array([name_share(f) for f in files])
    is_val = shares < val_split
    if len(files) >= 2 and not is_val.any():
        is_val[np.argmin(shares)] = True
    if len(files) >= 2 and is_val.all():
        is_val[np.argmax(shares)] = False
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights, normalised so that the mean sample weight is 1."""
    n = labels.size
    out = {}
    for c in (0, 1):
        k = int((labels == c).sum())
        out[c] = float(n / (2 * k)) if k else 1.0
    return out


def check_chunk_headers(files: Sequence[str], size: int) -> None:
    """Every chunk is an image of ``size`` x ``size`` px with 8-bit samples (header only)."""
    from PIL import Image, UnidentifiedImageError

    for f in files:
        try:
            with Image.open(f) as img:
                mode, shape = img.mode, img.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"{f}: not a readable image ({exc})") from None
        if mode not in ("L", "LA", "P", "RGB", "RGBA"):
            raise DataError(f"{f}: {mode} image; chunks must be 8-bit grayscale (chunk.py "
                            "writes them; 16-bit data is stretched to 8 bits there)")
        if shape != (size, size):
            raise DataError(f"{f}: chunk is {shape[0]}x{shape[1]}, expected {size}x{size} "
                            "(data.chunk_size)")


def load_chunk(path: str, size: int) -> np.ndarray:
    """One chunk as (size, size) uint8; a truncated or 16-bit file is a ``DataError``."""
    from shared.images import ImageReadError, read_image

    try:
        arr = read_image(path)
    except ImageReadError as exc:
        raise DataError(str(exc)) from None
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: {arr.dtype} samples; chunks must be 8-bit grayscale")
    if arr.ndim == 3:
        if arr.shape[-1] < 3:       # grey + alpha
            arr = arr[..., 0]
        else:                       # colour: ITU-R 601 luma, as chunk.py
            rgb = arr[..., :3].astype(np.float32)
            arr = np.rint(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
            arr = arr.astype(np.uint8)
    if arr.shape != (size, size):
        raise DataError(f"{path}: chunk is {arr.shape[1]}x{arr.shape[0]}, expected "
                        f"{size}x{size}")
    return arr


# --------------------------------------------------------------------------- the recipe

@dataclass
class Setup:
    """Everything one training run works with (``build`` makes it)."""

    cfg: dict
    seed: int
    files: np.ndarray
    labels: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    n_hard: int
    data: str
    data_digest: str
    model: Any = None
    state: dict = field(default_factory=dict)
    weights: dict | None = None
    cache: dict | None = None  # decoded chunks (train.cache), shared by both sequences

    @property
    def batch_size(self) -> int:
        return int(self.cfg["train"]["batch_size"])


def data_digest(files: Sequence[str], labels: np.ndarray) -> str:
    h = hashlib.sha256()
    for f, y in zip(files, labels):
        h.update(f"{Path(f).name}\t{int(y)}\n".encode())
    return h.hexdigest()[:16]


def build(cfg: dict, data: str | os.PathLike) -> Setup:
    """Samples, split and class weights (the model comes from ``new_model`` or
    ``load_state``)."""
    size = int(cfg["data"]["chunk_size"])
    files, labels, n_hard = read_samples(data)
    if len(files) < 2:
        raise DataError(f"{data}: {len(files)} chunk; training needs at least 2 (one for "
                        "training, one for validation)")
    check_chunk_headers(files, size)
    train_idx, val_idx = split_by_name(files, float(cfg["data"]["val_split"]))
    tcfg = cfg["train"]
    setup = Setup(cfg=cfg, seed=int(cfg["seed"]), files=np.asarray(files), labels=labels,
                  train_idx=train_idx, val_idx=val_idx, n_hard=n_hard, data=str(data),
                  data_digest=data_digest(files, labels))
    setup.weights = class_weights(labels[train_idx]) if tcfg.get("class_weight") else None
    setup.cache = {} if tcfg.get("cache", False) else None
    return setup


def sequences(setup: Setup, first_epoch: int = 1):
    """(training, validation) ``ChunkBatches``; the training one starts at ``first_epoch``."""
    from ice_patch_cnn.data.sequence import ChunkBatches

    read = functools.partial(load_chunk, size=int(setup.cfg["data"]["chunk_size"]))
    tr, va = setup.train_idx, setup.val_idx
    train = ChunkBatches(setup.files[tr], setup.labels[tr], setup.batch_size, read,
                         seed=setup.seed, first_epoch=first_epoch, cache=setup.cache)
    val = ChunkBatches(setup.files[va], setup.labels[va], setup.batch_size, read,
                       cache=setup.cache)
    return train, val


def new_model(setup: Setup):
    """A freshly initialised, compiled classifier (initialisation from the run's seed)."""
    import keras

    from ice_patch_cnn.model import compile_model, model_from_config

    keras.utils.set_random_seed(setup.seed)
    model = compile_model(model_from_config(setup.cfg),
                          float(setup.cfg["train"]["learning_rate"]))
    if setup.cfg["train"].get("run_eagerly"):
        model.run_eagerly = True  # no graph tracing: only worth it for tiny test models
    return model


def fit(setup: Setup, run, stop, log, callbacks: Sequence = ()) -> None:
    """``model.fit`` from the epoch after ``state["epochs_done"]`` to the target, with:
    ``SeedDropout`` (dropout state from the seed and the epoch), ``ModelCheckpoint``
    (``best.keras`` by ``val_loss``, written to a temporary name that ``_end_epoch`` renames),
    ``EpochHistory`` (Keras' ``CSVLogger``: ``history.csv``), ``_end_epoch`` (``last.keras`` +
    ``state.json``, the resume point), ``callbacks`` (tests) and ``StopOnSignal`` (last)."""
    import keras

    from ice_patch_cnn.callbacks import EpochHistory, SeedDropout, StopOnSignal

    state = setup.state
    done, target = int(state["epochs_done"]), int(state["target_epochs"])
    train, val = sequences(setup, first_epoch=done + 1)
    history = EpochHistory(str(run.file("history.csv")), append=True)
    end_epoch = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: _end_epoch(run, setup, epoch + 1, history.row, log))
    best = keras.callbacks.ModelCheckpoint(
        str(run.file(BEST_PENDING)), monitor="val_loss", mode="min", save_best_only=True,
        initial_value_threshold=state.get("best_val_loss"), verbose=0)
    setup.model.fit(train, steps_per_epoch=train.batches_per_epoch, validation_data=val,
                    epochs=target, initial_epoch=done, class_weight=setup.weights,
                    shuffle=False, verbose=0,
                    callbacks=[SeedDropout(setup.seed), best, history, end_epoch,
                               *callbacks, StopOnSignal(stop, run.path)])


def _end_epoch(run, setup: Setup, epoch: int, row: dict, log) -> None:
    """After epoch ``epoch`` (1-based): a new best (``ModelCheckpoint`` saved it to the
    temporary name) renamed onto ``best.keras``, then ``last.keras`` + ``state.json``."""
    state = setup.state
    pending = run.file(BEST_PENDING)
    if pending.is_file():
        os.replace(pending, run.file("best.keras"))
        state.update(best_val_loss=row["val_loss"], best_epoch=epoch,
                     best_val_accuracy=row["val_accuracy"])
    state["epochs_done"] = epoch
    save_state(run.path, setup)
    log.info(f"epoch {epoch}: loss {row['loss']:.4f} accuracy {row['accuracy']:.4f} "
             f"val_loss {row['val_loss']:.4f} val_accuracy {row['val_accuracy']:.4f} "
             f"({row['seconds']:.1f} s)")


def evaluate(model, setup: Setup) -> dict:
    """Loss and accuracy of ``model`` on the validation chunks."""
    _, val = sequences(setup)
    logs = model.evaluate(val, verbose=0, return_dict=True)
    return {"loss": float(logs["loss"]), "accuracy": float(logs["accuracy"])}


def save_state(run_dir: Path, setup: Setup) -> None:
    """``last.keras`` (weights and optimiser) and ``state.json``, committed as one unit."""
    from shared.atomic import _json_default, atomic_files

    # one unit (issue 27): a kill between the two files leaves the previous checkpoint
    with atomic_files(run_dir, "last", ["last.keras", "state.json"]) as tmp:
        setup.model.save(tmp["last.keras"])
        setup.state["iterations"] = int(setup.model.optimizer.iterations.numpy())
        tmp["state.json"].write_text(json.dumps(setup.state, indent=2, default=_json_default)
                                     + "\n", encoding="utf-8")


def load_state(run_dir: Path, setup: Setup) -> None:
    """Restore the model (with its optimiser) and the state of an earlier session."""
    from ice_patch_cnn.model import load_model
    from shared.atomic import checked_files

    checked_files(run_dir, "last", ["last.keras", "state.json"])
    state_path, last = run_dir / "state.json", run_dir / "last.keras"
    if not last.is_file() or not state_path.is_file():
        raise DataError(f"{run_dir}: nothing to resume (last.keras/state.json missing)")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{state_path}: not valid JSON ({exc})") from None
    model = load_model(last, compile=True)
    if int(model.optimizer.iterations.numpy()) != int(state.get("iterations", -1)):
        raise DataError(f"{last}: optimiser step {int(model.optimizer.iterations.numpy())} "
                        f"does not match {state_path} ({state.get('iterations')})")
    if setup.cfg["train"].get("run_eagerly"):
        model.run_eagerly = True
    setup.model, setup.state = model, state


def _new_state(setup: Setup, target: int) -> dict:
    return {"epochs_done": 0, "target_epochs": target,
            "best_val_loss": None, "best_epoch": None, "best_val_accuracy": None,
            "seed": setup.seed, "data": setup.data, "data_digest": setup.data_digest}


def _adopt_new_data(setup: Setup, run_dir: Path, log) -> None:
    """On resume with another data set: re-measure the best on the new validation set."""
    from ice_patch_cnn.model import load_model

    state = setup.state
    log.info(f"data changed since the last session ({state.get('data')} -> {setup.data})")
    if (run_dir / "best.keras").is_file() and state.get("best_val_loss") is not None:
        old = state["best_val_loss"]
        best = evaluate(load_model(run_dir / "best.keras", compile=True), setup)
        state.update(best_val_loss=best["loss"], best_val_accuracy=best["accuracy"])
        log.info(f"best.keras (epoch {state['best_epoch']}) re-measured on the new validation "
                 f"set: val_loss {old:.4f} -> {best['loss']:.4f}")
    state.update(data=setup.data, data_digest=setup.data_digest)


def _keep_history(run, epochs_done: int) -> None:
    """``history.csv`` cut to the complete rows of the checkpoint's epochs, in the columns
    ``CSVLogger`` appends (an interrupted epoch's row, or a half-written one, goes)."""
    from ice_patch_cnn.callbacks import HISTORY_COLUMNS

    def complete(row: dict) -> bool:
        try:
            return all(row.get(k) not in (None, "") for k in HISTORY_COLUMNS) and \
                int(row["epoch"]) <= epochs_done
        except ValueError:
            return False

    rows = [{k: r[k] for k in HISTORY_COLUMNS} for r in run.read_history() if complete(r)]
    if rows:
        run.write_history(rows)
    else:
        run.file("history.csv").unlink(missing_ok=True)


def _epoch_target(setup: Setup, resume: bool, epochs: int | None) -> int:
    done = int(setup.state.get("epochs_done", 0))
    if not resume:
        return int(epochs if epochs is not None else setup.cfg["train"]["epochs"])
    if epochs is not None:
        return done + int(epochs)
    return int(setup.state.get("target_epochs", setup.cfg["train"]["epochs"]))


def data_source(cfg: dict, run_dir: Path, data: str | os.PathLike | None,
                resume: bool) -> Path:
    """The training data: ``data`` (a path given by the caller, from the current folder),
    else on ``--resume`` the run's own, else the config's ``data.root``."""
    if data is not None:
        return Path(cli_path(data))
    if resume:
        recorded = _recorded_data(run_dir)
        if recorded:
            return Path(recorded)
    root = resolve_path(cfg["data"].get("root"))
    if root is None:
        raise DataError("data.root is not set: pass --data (a folder with 1/ and 0/ or an "
                        "index CSV)")
    if not root.exists():
        raise DataError(f"{root}: data.root not found; pass --data (a folder with 1/ and 0/ "
                        "or an index CSV) or --set data.root=...")
    return root


def run(cfg: dict, run_dir: str | os.PathLike, *, data: str | os.PathLike | None = None,
        resume: bool = False, overwrite: bool = False, epochs: int | None = None,
        threads: int | None = None, progress: bool = True, callbacks: Sequence = ()) -> dict:
    """Train (or resume) in ``run_dir`` and return the summary (also ``summary.json``).

    ``data`` overrides ``data.root`` (config.yaml keeps the absolute path of the data the run
    trained on); ``threads`` overrides ``train.threads`` (kept in config.yaml); ``callbacks``:
    more Keras callbacks (tests)."""
    import copy

    from ice_patch_cnn.model import set_threads
    from shared.runs import GracefulStop, RunDir

    validate_config(cfg)
    if not (resume and threads is None and "threads" not in cfg["train"]):
        cfg = resolve_run_threads(cfg, threads)  # (a run saved before train.threads: as it was)
    set_threads(int(cfg["train"].get("threads") or default_threads()))
    run_dir = Path(run_dir)
    cfg = resolve_run_precision(cfg, run_dir if resume else None)
    if resume and not (run_dir / "state.json").is_file():
        raise DataError(f"{run_dir}: nothing to resume (no state.json); start the run "
                        "without --resume")
    source = data_source(cfg, run_dir, data, resume)
    cfg = copy.deepcopy(cfg)
    cfg["data"]["root"] = str(source)
    setup = build(cfg, source)
    run, cfg = RunDir.open(run_dir, cfg, resume=resume, overwrite=overwrite, inputs=[source],
                           allow_on_resume=("data.root", "machine"))
    with run, GracefulStop() as stop:
        log = run.logger("ice_patch_cnn.train", None if progress else io.StringIO())
        _start(setup, run, resume, epochs, log)
        fit(setup, run, stop, log, callbacks)
        return _finish(setup, run, log)


def resolve_run_precision(cfg: dict, resumed: Path | None = None) -> dict:
    """A copy of ``cfg`` with ``train.precision`` resolved for this machine (``auto`` ->
    ``bf16``, i.e. Keras ``mixed_bfloat16``, where the CPU has native bf16, else ``fp32``;
    ``shared.keras_models``, the rule of both Keras subprojects), the Keras global policy set
    to it (the model is built under it) and the CPU it resolved against under ``machine``:
    config.yaml records what ran. ``resumed``: the run folder of a resume; a run saved before
    ``train.precision`` was recorded trained in fp32 and keeps it unrecorded."""
    import copy

    from shared.keras_models import set_keras_precision
    from shared.torch_runtime import machine_record  # framework-free (no torch import)

    cfg = copy.deepcopy(cfg)
    cfg["train"]["precision"] = set_keras_precision(cfg["train"].get("precision", "fp32"),
                                                    "train.precision")
    cfg["machine"] = machine_record()
    if resumed is not None and cfg["train"]["precision"] == "fp32":
        from shared.runs import CONFIG_NAME, read_yaml_mapping

        saved_path = Path(resumed) / CONFIG_NAME
        saved = read_yaml_mapping(saved_path, UserError) if saved_path.is_file() else {}
        if "precision" not in (saved.get("train") or {}):
            del cfg["train"]["precision"]  # (a run saved before train.precision: as it was)
    return cfg


def _finish(setup: Setup, run, log) -> dict:
    """``summary.json`` and the curves of a run that reached its epoch target."""
    from shared.runs import code_version

    summary = _summary(setup, code_version(Path(__file__).parent))
    plot_curves(run.read_history(), run.file("training_curves.png"),
                setup.state.get("best_epoch"),
                title=f"ice_patch_cnn ({setup.cfg.get('profile', '?')} profile)")
    run.write_summary(summary)
    log.info(f"best epoch {summary['best_epoch']}: val_loss {summary['best_val_loss']:.4f}, "
             f"val_accuracy {summary['best_val_accuracy']:.4f}; model: "
             f"{run.file('best.keras')}")
    return summary


def _start(setup: Setup, run, resume: bool, epochs: int | None, log) -> None:
    """Model and state for this session: new, or restored (then checked against the data)."""
    if resume:
        load_state(run.path, setup)
        state = setup.state
        partial, batch = state.pop("partial", None), state.pop("batch", 0)
        if partial or batch:  # a mid-epoch checkpoint of the earlier hand-written loop
            log.info(f"epoch {state['epochs_done'] + 1} was interrupted: it restarts")
        if state.get("data_digest") != setup.data_digest:
            _adopt_new_data(setup, run.path, log)
        run.file(BEST_PENDING).unlink(missing_ok=True)  # an interrupted epoch's candidate
        _keep_history(run, int(state["epochs_done"]))
        state["target_epochs"] = _epoch_target(setup, True, epochs)
        if state["target_epochs"] <= state["epochs_done"]:
            raise UserError(f"{run.path}: the run already reached epoch "
                            f"{state['epochs_done']}; pass --epochs N to train N more")
        log.info(f"resuming at epoch {state['epochs_done'] + 1}, target "
                 f"{state['target_epochs']}")
    else:
        setup.model = new_model(setup)
        setup.state = _new_state(setup, _epoch_target(setup, False, epochs))
    n, n_pos = setup.labels.size, int(setup.labels.sum())
    log.info(f"{n} chunks ({n_pos} with ice, {n_pos / n:.1%}; {setup.n_hard} hard left out): "
             f"{setup.train_idx.size} training, {setup.val_idx.size} validation"
             + (f"; class weights {setup.weights}" if setup.weights else ""))


def _recorded_data(run_dir: Path) -> str | None:
    from shared.atomic import checked_files

    checked_files(run_dir, "last", ["last.keras", "state.json"])
    path = run_dir / "state.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("data")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise DataError(f"{path}: damaged training state, cannot resume ({exc})") from None


def _summary(setup: Setup, version: str) -> dict:
    import keras

    s = setup.state
    n_pos = int(setup.labels.sum())
    return {
        "profile": setup.cfg.get("profile"), "backend": keras.backend.backend(),
        "seed": setup.seed, "data": setup.data, "chunks": int(setup.labels.size),
        "positives": n_pos, "positive_share": round(n_pos / setup.labels.size, 4),
        "hard_left_out": setup.n_hard, "train_chunks": int(setup.train_idx.size),
        "val_chunks": int(setup.val_idx.size), "class_weight": setup.weights,
        "parameters": int(setup.model.count_params()), "epochs_done": s["epochs_done"],
        "best_epoch": s["best_epoch"], "best_val_loss": s["best_val_loss"],
        "best_val_accuracy": s["best_val_accuracy"], "code_version": version,
        "precision": setup.cfg["train"].get("precision", "fp32"),
        "machine": setup.cfg.get("machine"),
    }


def validate_config(cfg: dict) -> None:
    """The values ``train.py`` needs, with a named error for each bad one."""
    t, d = cfg["train"], cfg["data"]
    checks = [("train.batch_size", t.get("batch_size"), int, lambda v: v >= 1),
              ("train.epochs", t.get("epochs"), int, lambda v: v >= 1),
              ("train.resume_epochs", t.get("resume_epochs"), int, lambda v: v >= 0),
              ("train.learning_rate", t.get("learning_rate"), float, lambda v: v > 0),
              ("data.chunk_size", d.get("chunk_size"), int, lambda v: v >= 8),
              ("data.val_split", d.get("val_split"), float, lambda v: 0 < v < 1),
              ("seed", cfg.get("seed"), int, lambda v: v >= 0)]
    for name, value, kind, ok in checks:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                kind is int and not float(value).is_integer()) or not ok(kind(value)):
            raise UserError(f"config: {name} = {value!r} is not valid")


# --------------------------------------------------------------------------- outputs

def plot_curves(history: list[dict], path: Path, best_epoch: int | None = None,
                title: str = "") -> None:
    """Loss and accuracy per epoch (training and validation), like the paper's Figure 3
    (drawn by ``shared.figures.plot_curves``)."""
    from shared.figures import plot_curves as draw

    ep = [int(r["epoch"]) for r in history]
    vline = (best_epoch, f"best (epoch {best_epoch})") if best_epoch else None
    panels = [{"ylabel": key, "vline": vline, "legend": True,
               "lines": [{"x": ep, "y": [float(r[key]) for r in history], "label": key},
                         {"x": ep, "y": [float(r[f"val_{key}"]) for r in history],
                          "fmt": "s-", "label": f"val_{key}"}]}
              for key in ("loss", "accuracy")]
    draw(path, panels, title=title, panel_size=(5.0, 3.8), dpi=110, legend_size=8)


# --------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    from shared.cli import add_precision_argument, add_progress_argument, finish_parser
    from shared.runs import add_run_arguments, positive_int

    parser = argparse.ArgumentParser(
        prog="ice-train",
        description="Train the Xception chunk classifier (paper: batch 25, 25 epochs, then "
                    "--resume --epochs 48 on the enlarged data). Data: a folder with 1/ and 0/ "
                    "or an index CSV (file,label).")
    parser.add_argument("--data", help="folder with 1/ and 0/, or index CSV, from the current "
                        "folder: shortcut for --set data.root=PATH (default: the config's "
                        "data.root, a relative one taken from the repository root; with "
                        "--resume: the run's own data; give an enlarged set to retrain on it)")
    add_run_arguments(parser, default_config="quick", run_dir_aliases=("--out",))
    parser.add_argument("--epochs", type=int,
                        help="epochs to train now (default train.epochs; with --resume: continue "
                             "to the run's target, or N more)")
    parser.add_argument("--batch-size", type=positive_int,
                        help="shortcut for --set train.batch_size=N")
    parser.add_argument("--lr", type=float, help="shortcut for --set train.learning_rate=X")
    parser.add_argument("--class-weight", action=argparse.BooleanOptionalAction, default=None,
                        help="shortcut for --set train.class_weight=true|false")
    parser.add_argument("--chunk-size", type=int, help="shortcut for --set data.chunk_size=N")
    parser.add_argument("--seed", type=int, help="shortcut for --set seed=N")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads, kept in the run config (shortcut for --set "
                             "train.threads=N; default: the config's, else $OMP_NUM_THREADS "
                             "or 2)")
    add_precision_argument(parser, default=None)
    add_progress_argument(parser, aliases=("--quiet",))
    return finish_parser(parser, set_example="train.epochs=3")


def _main(argv: Sequence[str] | None = None) -> int:
    from ice_patch_cnn.config import PROFILES, check_sections
    from shared.runs import quiet_tensorflow, run_config

    args = _parser().parse_args(argv)
    if args.data is not None:
        args.overrides.append(f"data.root={json.dumps(cli_path(args.data))}")
    for flag, key in (("batch_size", "train.batch_size"), ("lr", "train.learning_rate"),
                      ("class_weight", "train.class_weight"), ("chunk_size", "data.chunk_size"),
                      ("seed", "seed"), ("threads", "train.threads"),
                      ("precision", "train.precision")):
        value = getattr(args, flag)
        if value is not None:
            args.overrides.append(f"{key}={json.dumps(value)}")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    profile = args.config or args.default_config
    if args.run_dir is None:
        args.run_dir = resolve_path(f"runs/ice_patch_cnn/{Path(str(profile)).stem}")
    cfg = check_sections(run_config(args, PROFILES), profile)
    # data named on this command line (--data, --set data.root=...): the run trains on it;
    # otherwise a resume keeps the run's own data and a new run reads the config's data.root
    named = any(o.split("=", 1)[0].strip() == "data.root" for o in args.overrides)
    data = resolve_path(cfg["data"].get("root")) if named else None
    quiet_tensorflow()
    run(cfg, args.run_dir, data=data, resume=args.resume, overwrite=args.overwrite,
        epochs=args.epochs, progress=not args.no_progress)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
