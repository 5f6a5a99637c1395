"""Training: data reading, split, resume keeping the epoch count, safe-mode checkpoints."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ice_patch_cnn.train import DataError, class_weights, main, read_samples, split_by_name

SIZE = 32


def _chunks(root: Path, n_pos=6, n_neg=14, seed=0):
    rng = np.random.default_rng(seed)
    for label, n in ((1, n_pos), (0, n_neg)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(60, 110, (SIZE, SIZE)).astype(np.uint8)
            if label:
                y, x = rng.integers(6, SIZE - 10, 2)
                img[y:y + 5, x:x + 6] = 220
            Image.fromarray(img).save(root / str(label) / f"c{i}.png")
    return root


def _tiny_config(tmp_path: Path) -> Path:
    cfg = {"inherit": str(Path(__file__).resolve().parents[1] / "configs" / "quick.yml"),
           "profile": "test", "data": {"chunk_size": SIZE},
           "model": {"width_scale": 0.0625},
           "train": {"batch_size": 8, "epochs": 1, "run_eagerly": True}}
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_read_samples_folder_and_csv(tmp_path):
    root = _chunks(tmp_path / "d")
    files, labels, hard = read_samples(root)
    assert len(files) == 20 and labels.sum() == 6 and hard == 0
    index = tmp_path / "d" / "index.csv"
    with open(index, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label"])
        w.writerow(["1/c0.png", "1"])
        w.writerow(["0/c0.png", "0"])
        w.writerow(["0/c1.png", "hard"])
        w.writerow(["0/c2.png", "-1"])
    files, labels, hard = read_samples(index)
    assert labels.tolist() == [1, 0] and hard == 2
    assert Path(files[0]) == root / "1" / "c0.png"
    with pytest.raises(DataError, match="not found"):
        read_samples(tmp_path / "nope")
    (tmp_path / "bad.csv").write_text("file,label\n1/c0.png,7\n")
    with pytest.raises(DataError, match="label must be"):
        read_samples(tmp_path / "bad.csv")


def test_split_by_file_name_keeps_old_chunks_on_their_side():
    files = [f"data/IMG_{i // 50}/IMG_{i // 50}_r{i % 50}_c0.png" for i in range(500)]
    tr, va = split_by_name(files, 0.2)
    assert 0.15 < va.size / 500 < 0.25 and not set(tr) & set(va) and tr.size + va.size == 500
    assert (split_by_name(files, 0.2)[1] == va).all()
    # the side depends on the file name only: another folder or an enlarged set keeps it
    moved = [f.replace("data/", "elsewhere/") for f in files]
    assert (split_by_name(moved, 0.2)[1] == va).all()
    more = files + [f"data/NEW_{i}.png" for i in range(700)]
    tr2, va2 = split_by_name(more, 0.2)
    assert set(va) <= set(va2) and set(tr) <= set(tr2)
    assert split_by_name(files[:2], 0.2)[1].size == 1      # tiny sets: one on each side
    with pytest.raises(DataError, match="val_split"):
        split_by_name(files, 1.0)


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([1] * 2 + [0] * 8))
    assert w[1] == pytest.approx(2.5) and w[0] == pytest.approx(0.625)


def _history(run):
    with open(run / "history.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]


def _weights(path):
    from ice_patch_cnn.model import load_model

    return load_model(path).get_weights()


def test_train_then_resume_keeps_the_epoch_count(tmp_path):
    data = _chunks(tmp_path / "d")
    cfg = _tiny_config(tmp_path)
    out = tmp_path / "run"
    assert main(["--data", str(data), "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_done"] == 1
    for name in ("config.yaml", "history.csv", "train.log", "last.keras", "best.keras",
                 "summary.json", "training_curves.png"):
        assert (out / name).is_file(), name
    # the finished run cannot be resumed without asking for more epochs
    assert main(["--run-dir", str(out), "--resume", "--quiet"]) == 2
    assert main(["--run-dir", str(out), "--resume", "--epochs", "1", "--quiet"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_done"] == 2
    rows = _history(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["val_loss"])) for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_done"] == 2 and summary["chunks"] == 20
    assert summary["val_chunks"] + summary["train_chunks"] == 20
    from ice_patch_cnn.model import load_model

    assert load_model(out / "best.keras").input_shape == (None, SIZE, SIZE, 1)
    assert state["best_epoch"] in (1, 2)


def _kill_at(epoch: int, batch: int):
    """A Keras callback that sends this process SIGTERM during ``batch`` of ``epoch``
    (1-based epoch, 0-based batch), as a user's kill would."""
    import signal

    import keras

    def on_batch(b, logs=None):
        if (state["epoch"], b) == (epoch, batch):
            os.kill(os.getpid(), signal.SIGTERM)

    state = {"epoch": 0}
    return keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs=None: state.update(epoch=e + 1),
        on_train_batch_begin=on_batch)


def _same_weights(a: Path, b: Path, names=("last.keras", "best.keras")):
    for name in names:
        for wa, wb in zip(_weights(a / name), _weights(b / name), strict=True):
            np.testing.assert_array_equal(wa, wb)


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    """model.fit: 2 epochs straight = 1 epoch + a SIGTERM in epoch 2 + --resume; the same
    seed twice gives the same weights; 1 epoch + --resume --epochs 1 is the same run too."""
    from ice_patch_cnn.config import load_config
    from ice_patch_cnn.train import run
    from shared.runs import RunInterrupted

    data = _chunks(tmp_path / "d")
    cfg = _tiny_config(tmp_path)
    base = ["--data", str(data), "--config", str(cfg), "--epochs", "2", "--quiet"]
    assert main([*base, "--run-dir", str(tmp_path / "a")]) == 0
    # determinism: the same seed twice gives identical metrics and weights
    assert main([*base, "--run-dir", str(tmp_path / "c")]) == 0
    assert _history(tmp_path / "a") == _history(tmp_path / "c")
    _same_weights(tmp_path / "a", tmp_path / "c")
    # a SIGTERM during the second batch of epoch 2: exit 143, the epoch-1 checkpoint stays
    with pytest.raises(RunInterrupted) as stopped:
        run(load_config(cfg), tmp_path / "b", data=data, epochs=2, progress=False,
            callbacks=[_kill_at(2, 1)])
    assert stopped.value.exit_code == 143
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["epochs_done"] == 1 and state["iterations"] == 2
    assert not (tmp_path / "b" / "summary.json").exists()
    assert [int(r["epoch"]) for r in _history(tmp_path / "b")] == [1]
    assert main(["--run-dir", str(tmp_path / "b"), "--resume", "--quiet"]) == 0
    assert _history(tmp_path / "a") == _history(tmp_path / "b")
    _same_weights(tmp_path / "a", tmp_path / "b")
    # the paper's way: one epoch, then --resume --epochs 1
    assert main([*base[:-3], "--epochs", "1", "--quiet", "--run-dir", str(tmp_path / "e")]) == 0
    assert main(["--run-dir", str(tmp_path / "e"), "--resume", "--epochs", "1", "--quiet"]) == 0
    assert _history(tmp_path / "a") == _history(tmp_path / "e")
    _same_weights(tmp_path / "a", tmp_path / "e")


def test_the_epoch_order_and_the_dropout_state_depend_on_seed_and_epoch_only(tmp_path):
    import keras

    from ice_patch_cnn.callbacks import seed_dropout, seed_variables
    from ice_patch_cnn.data.sequence import ChunkBatches
    from ice_patch_cnn.model import build_xception

    files = [f"f{i}.png" for i in range(11)]
    labels = np.arange(11) % 2

    def read(path):
        return np.full((4, 4), int(path[1:-4]), np.uint8)

    seq = ChunkBatches(files, labels, 4, read, seed=7)
    later = ChunkBatches(files, labels, 4, read, seed=7, first_epoch=3)
    assert seq.num_batches is None and seq.batches_per_epoch == 3     # 4 + 4 + 3
    # epoch 3 read by a run that started at epoch 1 (batches 6-8) or resumed at epoch 3
    for b in range(3):
        x1, y1 = seq[6 + b]
        x3, y3 = later[b]
        np.testing.assert_array_equal(x1, x3)
        np.testing.assert_array_equal(y1, y3)
    epoch1 = np.concatenate([seq[b][0][:, 0, 0, 0] for b in range(3)])
    assert sorted(epoch1.astype(int)) == list(range(11))               # each chunk once
    assert not np.array_equal(epoch1, np.concatenate([seq[3 + b][0][:, 0, 0, 0]
                                                      for b in range(3)]))
    assert [len(seq[b][1]) for b in range(3)] == [4, 4, 3]
    val = ChunkBatches(files, labels, 5, read)                         # 5 + 6 (no 1-chunk batch)
    assert len(val) == 2 and val.num_batches == 2 and [len(val[b][1]) for b in (0, 1)] == [5, 6]
    assert (val[0][0][:, 0, 0, 0] == np.arange(5)).all()
    # dropout: one random state, set from (seed, epoch) through public Layer APIs
    model = build_xception((32, 32, 1), width_scale=0.0625)
    (state,) = seed_variables(model)
    seed_dropout(model, 1, 2)
    first = keras.ops.convert_to_numpy(state.value).copy()
    seed_dropout(model, 1, 3)
    assert not np.array_equal(first, keras.ops.convert_to_numpy(state.value))
    seed_dropout(model, 1, 2)
    np.testing.assert_array_equal(first, keras.ops.convert_to_numpy(state.value))


def test_no_private_keras_api_in_ice_patch_cnn():
    root = Path(__file__).resolve().parents[1]
    bad = ("keras.src", "_flatten_layers", "global_state", "train_on_batch",
           "_seed_generators")
    for path in root.rglob("*.py"):
        if "tests" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for word in bad:
            assert word not in text, f"{path.relative_to(root)} uses {word}"


def test_data_root_from_the_config(tmp_path, capsys):
    """Without --data the run reads data.root (relative: from the repository root) and
    config.yaml keeps the data's absolute path; a missing data.root is one line."""
    from shared.configs import REPO_ROOT

    data = _chunks(tmp_path / "d")
    cfg = _tiny_config(tmp_path)
    rel = os.path.relpath(data, REPO_ROOT)
    out = tmp_path / "run"
    assert main(["--config", str(cfg), "--set", f"data.root={rel}", "--run-dir", str(out),
                 "--class-weight", "--quiet"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert Path(saved["data"]["root"]).is_absolute()
    assert Path(saved["data"]["root"]).resolve() == data.resolve()
    summary = json.loads((out / "summary.json").read_text())
    weights = summary["class_weight"]                                  # 6 of 20 with ice
    assert summary["chunks"] == 20 and weights["1"] > 1 > weights["0"]
    # --resume without --data: the run's own data, whatever the profile says
    assert main(["--run-dir", str(out), "--resume", "--epochs", "1", "--quiet"]) == 0
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 2
    capsys.readouterr()
    missing = tmp_path / "nothing-here"
    assert main(["--config", str(cfg), "--set", f"data.root={missing}", "--run-dir",
                 str(tmp_path / "r2"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nothing-here" in err and err.count("\n") == 1
    # a folder holding index.csv is read through it
    (data / "index.csv").write_text("file,label\n0/c2.png,1\n0/c0.png,0\n0/c1.png,0\n")
    (data / "1").rename(tmp_path / "ones")
    files, labels, _ = read_samples(data)
    assert labels.tolist() == [1, 0, 0] and Path(files[0]).name == "c2.png"


def test_run_folder_contract(tmp_path, capsys):
    from shared.runs import RunDir

    data = _chunks(tmp_path / "d")
    cfg = _tiny_config(tmp_path)
    out = tmp_path / "run"
    args = ["--data", str(data), "--config", str(cfg), "--run-dir", str(out), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2                                   # refused reuse
    assert "not empty" in capsys.readouterr().err
    assert (out / "summary.json").is_file()
    assert main([*args, "--overwrite"]) == 0
    other = tmp_path / "locked"
    lock, _ = RunDir.open(other, {"a": 1})
    with lock:
        assert main([*args[:-3], "--run-dir", str(other), "--overwrite", "--quiet"]) == 2
        assert "another run" in capsys.readouterr().err
    assert main([*args, "--resume", "--set", "train.learning_rate=0.5"]) == 2
    assert "differ" in capsys.readouterr().err


def test_config_and_data_errors_are_one_line(tmp_path, capsys):
    data = _chunks(tmp_path / "d")
    cfg = _tiny_config(tmp_path)
    base = ["--data", str(data), "--config", str(cfg), "--quiet"]
    assert main([*base, "--run-dir", str(tmp_path / "r1"), "--set", "train.epoch=3"]) == 2
    assert "unknown config key 'train.epoch'" in capsys.readouterr().err
    bad = tmp_path / "bad.yml"
    bad.write_text(f"inherit: {cfg}\ntrain:\n  epochz: 3\n")
    assert main([*base[:2], "--config", str(bad), "--run-dir", str(tmp_path / "r2")]) == 2
    assert "epochz" in capsys.readouterr().err
    # a 16-bit PNG among the chunks: named, before anything is written
    Image.fromarray(np.full((SIZE, SIZE), 4000, np.uint16)).save(data / "1" / "deep.png")
    assert main([*base, "--run-dir", str(tmp_path / "r3")]) == 2
    err = capsys.readouterr().err.strip()
    assert "deep.png" in err and "8-bit" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r3" / "config.yaml").exists()
    (data / "1" / "deep.png").unlink()
    # a truncated PNG: its header reads, its pixels do not
    raw = (data / "0" / "c3.png").read_bytes()
    (data / "0" / "c3.png").write_bytes(raw[: len(raw) // 2])
    assert main([*base, "--run-dir", str(tmp_path / "r4")]) == 2
    err = capsys.readouterr().err.strip()
    assert "c3.png" in err and len(err.splitlines()) == 1


def test_resume_on_an_enlarged_set_remeasures_the_best(tmp_path):
    data = _chunks(tmp_path / "d", n_pos=4, n_neg=10)
    cfg = _tiny_config(tmp_path)
    out = tmp_path / "run"
    assert main(["--data", str(data), "--config", str(cfg), "--run-dir", str(out),
                 "--quiet"]) == 0
    first = json.loads((out / "summary.json").read_text())
    _chunks(tmp_path / "d", n_pos=8, n_neg=20, seed=1)     # same names, plus new ones
    for label, n in ((1, 6), (0, 14)):
        for i in range(n):
            src = data / str(label) / f"c{i}.png"
            src.rename(data / str(label) / f"more{i}.png")
    _chunks(tmp_path / "d", n_pos=4, n_neg=10)             # the old chunks, unchanged
    assert main(["--data", str(data), "--run-dir", str(out), "--resume", "--epochs", "1",
                 "--quiet"]) == 0
    second = json.loads((out / "summary.json").read_text())
    assert second["chunks"] > first["chunks"] and second["epochs_done"] == 2
    log = (out / "train.log").read_text()
    assert "data changed" in log and "re-measured on the new validation set" in log


def test_cli_errors_are_clean(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing"), "--config", "quick",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "missing: not found" in capsys.readouterr().err
    assert main(["--data", str(_chunks(tmp_path / "d")), "--config", "quick",
                 "--out", str(tmp_path / "r2"), "--resume", "--quiet"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["--data", "x", "--config", "nosuchprofile"]) == 2


TORCH_CODE = r"""
import json, sys
import keras
assert keras.backend.backend() == "torch", keras.backend.backend()
from ice_patch_cnn.train import main
rc = main(sys.argv[1:])
assert "torch" in sys.modules
summary = json.load(open(sys.argv[sys.argv.index("--run-dir") + 1] + "/summary.json"))
print("OK", rc, summary["backend"], summary["parameters"], summary["epochs_done"])
"""


def test_one_epoch_under_the_torch_backend(tmp_path):
    data = _chunks(tmp_path / "d", n_pos=3, n_neg=5)
    cfg = _tiny_config(tmp_path)
    env = dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", TORCH_CODE, "--data", str(data), "--config",
                          str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK 0 torch 13859 1"), out.stdout
