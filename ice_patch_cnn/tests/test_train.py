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


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    import signal

    import ice_patch_cnn.train as train_mod

    data = _chunks(tmp_path / "d")
    cfg = _tiny_config(tmp_path)
    base = ["--data", str(data), "--config", str(cfg), "--epochs", "2", "--quiet"]
    assert main([*base, "--run-dir", str(tmp_path / "a")]) == 0
    # determinism: the same seed twice gives identical metrics and weights
    assert main([*base, "--run-dir", str(tmp_path / "c")]) == 0
    assert _history(tmp_path / "a") == _history(tmp_path / "c")
    for wa, wc in zip(_weights(tmp_path / "a" / "last.keras"),
                      _weights(tmp_path / "c" / "last.keras")):
        np.testing.assert_array_equal(wa, wc)
    seed_batch = train_mod._set_batch_seed

    def kill_at_epoch2_batch1(model, seed, epoch, batch):
        if (epoch, batch) == (2, 1):
            os.kill(os.getpid(), signal.SIGTERM)
        seed_batch(model, seed, epoch, batch)

    monkeypatch.setattr(train_mod, "_set_batch_seed", kill_at_epoch2_batch1)
    assert main([*base, "--run-dir", str(tmp_path / "b")]) == 143
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert (state["epochs_done"], state["batch"]) == (1, 2)
    assert not (tmp_path / "b" / "summary.json").exists()
    monkeypatch.setattr(train_mod, "_set_batch_seed", seed_batch)
    assert main(["--run-dir", str(tmp_path / "b"), "--resume", "--quiet"]) == 0
    assert _history(tmp_path / "a") == _history(tmp_path / "b")
    for name in ("last.keras", "best.keras"):
        for wa, wb in zip(_weights(tmp_path / "a" / name), _weights(tmp_path / "b" / name)):
            np.testing.assert_array_equal(wa, wb)


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
import sys
import numpy as np
import keras
assert keras.backend.backend() == "torch", keras.backend.backend()
from ice_patch_cnn.model import build_xception, compile_model
from ice_patch_cnn.train import ChunkLoader, _set_batch_seed, read_samples
files, labels, _ = read_samples(sys.argv[1])
loader = ChunkLoader(32)
_, x = next(loader.batches(files, [(0, 8)]))
loader.close()
y = labels[:8].astype("float32")[:, None]
assert x.shape == (8, 32, 32, 1) and y.shape == (8, 1)
model = compile_model(build_xception((32, 32, 1), width_scale=0.0625))
_set_batch_seed(model, 1, 1, 0)
first = model.train_on_batch(x, y, return_dict=True)
second = model.train_on_batch(x, y, return_dict=True)
assert np.isfinite(first["loss"]) and np.isfinite(second["loss"])
assert "torch" in sys.modules
print("OK", model.count_params())
"""


def test_one_step_under_the_torch_backend(tmp_path):
    data = _chunks(tmp_path / "d", n_pos=3, n_neg=5)
    env = dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", TORCH_CODE, str(data)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK 13859"), out.stdout
