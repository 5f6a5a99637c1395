"""A tiny train + predict run on synthetic tiles, and the CLIs' clean errors."""

import json
import subprocess
import sys

import numpy as np

from crater_resunet.data.synthetic import write_dataset


def test_synthetic_tiles_are_valid_yolo(tmp_path):
    from crater_resunet.data import index_split, load_labels

    counts = write_dataset(tmp_path / "syn", n_train=3, n_valid=2, size=64, seed=1,
                           empty_fraction=0.34)
    idx = index_split(tmp_path / "syn", "train")
    labels = load_labels(idx)
    assert len(idx) == 3 and sum(len(x) for x in labels) == counts["train_craters"]
    again = write_dataset(tmp_path / "syn", n_train=3, n_valid=2, size=64, seed=1,
                          empty_fraction=0.34)
    assert again == counts  # reused, not regenerated


def test_tiny_train_and_predict(tmp_path):
    from crater_resunet.model import load_model
    from crater_resunet.predict import run_prediction
    from crater_resunet.train import PROFILES, run
    from shared.configs import load_config

    data = tmp_path / "syn"
    write_dataset(data, n_train=4, n_valid=2, size=96, seed=0)
    cfg = load_config("quick", PROFILES, {"data.root": str(data), "data.image_size": [64, 64],
                                          "model.base_filters": 4})
    cfg["train"].update(epochs=1, batch_size=2, run_eagerly=True)  # tracing costs ~30 s CPU
    summary = run(cfg, tmp_path / "run", verbose=0)
    for name in ("best.keras", "last.keras", "state.json", "history.csv", "config.yaml",
                 "train.log", "summary.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert summary["params_total"] == 561_077 and summary["epochs_run"] == 1
    assert np.isfinite(summary["evaluate_best_model"]["valid"]["loss"])
    model = load_model(tmp_path / "run" / "best.keras", compile=False)
    images = sorted((data / "valid" / "images").glob("*.png"))
    out = tmp_path / "pred"
    res = run_prediction(model, images, out, figures=1, mode="tile", overlap=16)
    assert res["labelled_images"] == 2
    assert {"dice", "precision", "recall", "accuracy", "dice_soft"} <= set(res["pixel"])
    assert {"crater_precision", "crater_recall", "crater_f1"} <= set(res["crater"])
    for p in images:
        assert (out / "labels" / f"{p.stem}.txt").is_file()
        assert (out / "masks" / f"{p.stem}_prob.png").is_file()
    # figures=1: one image's paper figure and its native-resolution overlay of circles
    assert sorted(f.name for f in (out / "figures").glob("*.png")) == [
        f"{images[0].stem}.png", f"{images[0].stem}_overlay.png"]
    assert (out / "craters.csv").read_text().startswith("image,x,y,diameter")
    assert json.loads((out / "metrics.json").read_text())["images"] == 2


def test_clis_fail_cleanly(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)

    out = run("crater_resunet.train", "--data", str(tmp_path / "none"))
    assert out.returncode == 2 and "none" in out.stderr and "Traceback" not in out.stderr
    out = run("crater_resunet.train", "--config", "nosuch")
    assert out.returncode == 2 and "nosuch" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "f").write_text("x")
    out = run("crater_resunet.train", "--run-dir", str(tmp_path / "used"), "--data",
              str(tmp_path / "none"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    out = run("crater_resunet.predict", "--model", str(tmp_path / "m.keras"), "--out",
              str(tmp_path / "o"), str(tmp_path))
    assert out.returncode == 2 and "m.keras: model file not found" in out.stderr
