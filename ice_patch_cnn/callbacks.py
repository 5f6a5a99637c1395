"""The Keras callbacks of the training recipe (``train.py``), public Keras APIs only.

* ``SeedDropout``: at the start of epoch ``e`` every random seed of the model (the Dropout
  layer's ``SeedGenerator`` state: what ``Layer.variables`` holds beyond ``Layer.weights``) is
  set to ``(derive_seed(seed, "dropout", e, i), 0)``. A ``.keras`` file does not save that
  state, so a resumed run draws the same dropout masks as an uninterrupted one only if no
  random state has to survive the restart.
* ``EpochHistory``: ``keras.callbacks.CSVLogger`` writing the run contract's ``history.csv``:
  1-based epochs and the epoch's wall time in ``seconds``.
* ``StopOnSignal``: a SIGINT/SIGTERM caught by ``shared.runs.GracefulStop`` ends training after
  the current batch with ``RunInterrupted`` (exit 130/143); the last epoch's checkpoint is the
  resume point.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from shared.runs import derive_seed

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
# the columns as CSVLogger writes them ("epoch", then the keys sorted)
HISTORY_COLUMNS = ["epoch", *sorted([*HISTORY_KEYS, "seconds"])]


def seed_variables(model) -> list:
    """The random-seed states of ``model``'s layers (``Layer.variables`` include them,
    ``Layer.weights`` do not), in layer order."""
    out = []
    for layer in model.layers:
        weights = {id(w) for w in layer.weights}
        out += [v for v in layer.variables if id(v) not in weights]
    return out


def seed_dropout(model, seed: int, epoch: int) -> None:
    """Every random state of ``model`` for ``epoch`` (1-based), from (seed, epoch) only."""
    for i, state in enumerate(seed_variables(model)):
        state.assign(np.array([derive_seed(seed, "dropout", epoch, i), 0], dtype=state.dtype))


class SeedDropout(keras.callbacks.Callback):
    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed)

    def on_epoch_begin(self, epoch, logs=None):
        seed_dropout(self.model, self.seed, epoch + 1)


class EpochHistory(keras.callbacks.CSVLogger):
    """``history.csv``: one row per epoch (``HISTORY_COLUMNS``); ``append`` on resume."""

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {k: float(logs[k]) for k in HISTORY_KEYS if k in logs}
        row["seconds"] = round(time.time() - self._t0, 1)
        self.row = {"epoch": epoch + 1, **row}
        super().on_epoch_end(epoch + 1, row)


class StopOnSignal(keras.callbacks.Callback):
    """Raise ``RunInterrupted`` after the batch in which a stop signal arrived."""

    def __init__(self, stop, run_dir):
        super().__init__()
        self.stop, self.run_dir = stop, run_dir

    def on_train_batch_end(self, batch, logs=None):
        self.stop.raise_if_requested(self.run_dir)

    def on_test_batch_end(self, batch, logs=None):
        self.stop.raise_if_requested(self.run_dir)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.params["epochs"]:  # after the last epoch: finish the run
            self.stop.raise_if_requested(self.run_dir)
