"""The run contract for crater training: resume after SIGTERM equals an uninterrupted run,
refused reuse, the lock, unknown --set keys, bad training images named."""

import signal

import keras
import numpy as np
import pytest
from PIL import Image

from crater_resunet.data.synthetic import write_dataset
from crater_resunet.train import PROFILES, run
from shared.configs import ConfigError, load_config
from shared.errors import UserError
from shared.runs import RunDir, RunInterrupted


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("crater") / "syn"
    write_dataset(root, n_train=4, n_valid=2, size=64, seed=0)
    return root


def tiny(data, **train):
    cfg = load_config("quick", PROFILES, {
        "data.root": str(data), "data.image_size": [64, 64], "data.cache": False,
        "model.base_filters": 2, "train.batch_size": 2, "train.epochs": 3,
        "train.run_eagerly": True, "train.deterministic": True,
        "train.early_stopping_patience": 1, "train.reduce_lr_patience": 1})
    cfg["train"].update(train)
    return cfg


class SigtermAt(keras.callbacks.Callback):
    """Sends SIGTERM to this process after the n-th training batch of the run."""

    def __init__(self, n):
        super().__init__()
        self.n, self.seen = n, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.n:
            signal.raise_signal(signal.SIGTERM)


def _weights(path):
    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).weights]


def test_resume_after_sigterm_equals_uninterrupted(tmp_path, data):
    cfg = tiny(data)
    full = run(cfg, tmp_path / "full", verbose=0)
    with pytest.raises(RunInterrupted) as exc:  # mid-epoch 2 (2 batches per epoch)
        run(cfg, tmp_path / "cut", verbose=0, extra_callbacks=[SigtermAt(3)])
    assert exc.value.exit_code == 143
    assert len(RunDir(tmp_path / "cut").read_history()) == 1
    resumed = run(cfg, tmp_path / "cut", resume=True, verbose=0)
    assert resumed["history"] == full["history"]
    assert (resumed["epochs_run"], resumed["best_epoch"]) == (full["epochs_run"],
                                                              full["best_epoch"])
    for name in ("last.keras", "best.keras"):
        for a, b in zip(_weights(tmp_path / "full" / name), _weights(tmp_path / "cut" / name)):
            assert np.max(np.abs(a - b)) <= 1e-6, name
    for name in ("config.yaml", "history.csv", "train.log", "summary.json", "state.json"):
        assert (tmp_path / "cut" / name).is_file(), name


def test_same_seed_twice_gives_identical_metrics(tmp_path, data):
    cfg = tiny(data, epochs=2)
    a = run(cfg, tmp_path / "a", verbose=0)
    b = run(cfg, tmp_path / "b", verbose=0)
    assert a["history"] == b["history"]
    assert a["evaluate_best_model"] == b["evaluate_best_model"]


def test_used_run_folder_is_refused_and_locked(tmp_path, data):
    cfg = tiny(data, epochs=1)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x.txt").write_text("old")
    with pytest.raises(UserError, match="not empty"):
        run(cfg, tmp_path / "r", verbose=0)
    assert (tmp_path / "r" / "x.txt").read_text() == "old"
    held, _ = RunDir.open(tmp_path / "l", cfg)
    with held, pytest.raises(UserError, match="another run"):
        run(cfg, tmp_path / "l", overwrite=True, verbose=0)
    with pytest.raises(ConfigError, match="train.epochz"):
        load_config("quick", PROFILES, ["train.epochz=3"])


@pytest.mark.parametrize("kind, fragment", [("truncated", "truncated"), ("16bit", "I;16")])
def test_bad_training_image_is_named(tmp_path, data, kind, fragment):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(data, root)
    bad = sorted((root / "train" / "images").glob("*.png"))[0]
    if kind == "truncated":
        bad.write_bytes(bad.read_bytes()[:200])
    else:
        Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(bad)
    cfg = tiny(root, epochs=1)
    with pytest.raises(UserError) as exc:
        run(cfg, tmp_path / "r", verbose=0)
    assert str(bad) in str(exc.value) and fragment in str(exc.value)


@pytest.mark.parametrize("content", [b"not a model", b"PK\x03\x04 truncated zip"])
def test_resume_from_a_foreign_last_model_is_one_named_line(tmp_path, data, content):
    cfg = tiny(data, epochs=1)
    run(cfg, tmp_path / "r", verbose=0)
    (tmp_path / "r" / "last.keras").write_bytes(content)
    with pytest.raises(UserError) as exc:
        run(cfg, tmp_path / "r", resume=True, verbose=0)
    msg = str(exc.value)
    assert "\n" not in msg and "last.keras" in msg and "cannot resume" in msg, msg
