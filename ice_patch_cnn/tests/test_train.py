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

from ice_patch_cnn.train import DataError, class_weights, main, read_samples, split_indices

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


def test_split_is_random_seeded_and_twenty_percent():
    tr, va = split_indices(100, 0.2, 3)
    assert va.size == 20 and tr.size == 80 and not set(tr) & set(va)
    tr2, va2 = split_indices(100, 0.2, 3)
    assert (va == va2).all()
    assert not (split_indices(100, 0.2, 4)[1] == va).all()
    assert va.tolist() != list(range(80, 100))


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([1] * 2 + [0] * 8))
    assert w[1] == pytest.approx(2.5) and w[0] == pytest.approx(0.625)


def test_train_then_resume_keeps_the_epoch_count(tmp_path):
    data = _chunks(tmp_path / "d")
    cfg = _tiny_config(tmp_path)
    out = tmp_path / "run"
    assert main(["--data", str(data), "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_done"] == 1
    assert main(["--data", str(data), "--config", str(cfg), "--out", str(out), "--resume",
                 "--epochs", "1", "--quiet"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_done"] == 2
    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["val_loss"])) for r in rows)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["epochs_done"] == 2 and summary["epochs_this_run"] == 1
    assert summary["val_chunks"] == 4 and summary["chunks"] == 20
    assert (out / "training_curves.png").stat().st_size > 1000
    from ice_patch_cnn.model import load_model

    best = load_model(out / "best.keras")
    assert best.input_shape == (None, SIZE, SIZE, 1)
    assert state["best_epoch"] in (1, 2)


def test_cli_errors_are_clean(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing"), "--config", "quick",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "missing: not found" in capsys.readouterr().err
    assert main(["--data", str(_chunks(tmp_path / "d")), "--config", "quick",
                 "--out", str(tmp_path / "r2"), "--resume", "--quiet"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--data", "x", "--config", "nosuchprofile"])


TORCH_CODE = r"""
import sys
import numpy as np
import keras
assert keras.backend.backend() == "torch", keras.backend.backend()
from ice_patch_cnn.model import build_xception, compile_model
from ice_patch_cnn.train import make_dataset, read_samples
files, labels, _ = read_samples(sys.argv[1])
batches = make_dataset(files, labels, 32, 8, shuffle=True)
x, y = batches[0]
assert x.shape == (8, 32, 32, 1) and y.shape == (8, 1)
model = compile_model(build_xception((32, 32, 1), width_scale=0.0625))
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
