"""Tiny end to end: scheme (c) training, prediction with metrics, crack analysis; torchrun."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mars_cracknet.checkpoint import checkpoint_info, read_weights

REPO = Path(__file__).resolve().parents[2]


def test_semi_train_predict_analyse(tiny_data, tmp_path):
    from mars_cracknet import analysis, predict
    from mars_cracknet.train import main as train_main

    runs = tmp_path / "runs"
    rc = train_main(["--profile", "quick", "--mode", "semi", "--model", "unet",
                     "--set", "width=8", "--data", str(tiny_data), "--runs", str(runs),
                     "--name", "c", "--epochs", "2", "--pretrain-epochs", "1",
                     "--batch-size", "2", "--crop-size", "32", "--lr", "1e-3", "--threads", "2"])
    assert rc == 0
    run = runs / "c"
    # stage 1: a 3-channel auto-encoder; stage 2: the 1-class network started from it
    pre = checkpoint_info(run / "pretrain" / "last.safetensors")
    assert pre == {"model": "unet", "num_classes": 3, "width": 8}
    assert checkpoint_info(run / "best.safetensors")["num_classes"] == 1
    res = json.loads((run / "results.json").read_text())
    assert res["mode"] == "semi" and res["epochs"] == 2 and res["test"]["n_images"] == 2
    for m in ("precision", "recall", "dice", "jaccard"):
        assert 0.0 <= res["test"][m] <= 1.0
    assert np.isfinite(res["final_train_loss"])
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,train_loss,precision")

    # predict the two Mars test images, with metrics against their masks
    test_dir = tmp_path / "test_imgs"
    test_dir.mkdir()
    stems = (tiny_data / "lists" / "mars_test.txt").read_text().split()
    for s in stems:
        shutil.copy(tiny_data / "imgs" / f"{s}.png", test_dir / f"{s}.png")
    out = tmp_path / "pred"
    assert predict.main([str(run), str(test_dir), "--out", str(out),
                         "--masks", str(tiny_data / "masks"), "--tile", "32",
                         "--overlap", "8"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len((out / "metrics.csv").read_text().splitlines()) == len(stems) + 2
    assert set(metrics) >= {"mean"} or "mean" in json.dumps(metrics)
    masks = sorted(out.glob("*_mask.png"))
    assert len(masks) == len(stems)
    assert np.asarray(Image.open(masks[0])).shape == (64, 64)

    # analyse the predicted masks and the ground truth, and compare them
    mask_dir = tmp_path / "pred_masks"
    mask_dir.mkdir()
    for m in masks:
        shutil.copy(m, mask_dir / m.name)
    gt_dir = tmp_path / "gt_masks"
    gt_dir.mkdir()
    for s in stems:
        shutil.copy(tiny_data / "masks" / f"{s}.png", gt_dir / f"{s}.png")
    assert analysis.main([str(gt_dir), "--out", str(tmp_path / "an")]) == 0
    summary = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert summary["n_images"] == len(stems)
    assert summary["intersection_angles"]["n"] > 0  # synthetic networks have junctions
    assert analysis.main(["--compare", str(gt_dir), str(mask_dir), "--out",
                          str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.pdf").is_file()
    assert (tmp_path / "cmp" / "ks.csv").is_file()


def test_autoencoder_targets_are_the_images(tiny_data):
    """Stage 1 of scheme (c) learns to reproduce its (augmented) input."""
    from mars_cracknet.data.mars import CrackDataset

    ds = CrackDataset.for_mode(tiny_data, "semi", crop_size=32, train=True, seed=0)
    x, y = ds[0]
    assert x.shape == y.shape == (3, 32, 32)
    assert torch.equal(x, y)
    assert len(ds) == 4  # 2 unlabelled Earth + 2 unlabelled Mars


@pytest.mark.slow
def test_torchrun_two_processes(tiny_data, tmp_path):
    """The training script runs unchanged under torchrun with 2 CPU processes (gloo)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    assert torchrun.is_file(), torchrun
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "mars_cracknet.train",
           "--profile", "quick", "--mode", "earth_mars", "--model", "unet", "--set", "width=8",
           "--data", str(tiny_data), "--runs", str(tmp_path / "runs"), "--name", "ddp",
           "--epochs", "2", "--batch-size", "2", "--crop-size", "32", "--threads", "1",
           "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    res = json.loads((run / "results.json").read_text())
    cfg = (run / "config.yml").read_text()
    assert "world_size: 2" in cfg
    assert res["test"]["n_images"] == 2  # metrics reduced over both ranks
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    state, _ = read_weights(run / "last.safetensors")
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    assert not list(run.glob(".*.tmp*"))  # only rank 0 wrote, atomically


def test_reproduce_reuses_only_matching_runs(tmp_path):
    import yaml

    from mars_cracknet.config import load_config, validate
    from mars_cracknet.reproduce import _stale

    cfg = validate(load_config("quick", {"mode": "semi"}))
    run = tmp_path / "semi"
    assert _stale(run, cfg, "semi")  # nothing there yet
    run.mkdir()
    (run / "config.yml").write_text(yaml.safe_dump(cfg))
    assert not _stale(run, cfg, "semi")
    assert _stale(run, cfg, "mars")
    assert _stale(run, {**cfg, "crop_size": cfg["crop_size"] + 32}, "semi")
    assert _stale(run, {**cfg, "pretrain_epochs": 99}, "semi")


@pytest.mark.slow
def test_sigterm_saves_last_and_resumes(tiny_data, tmp_path):
    """A real SIGTERM during training saves ``last`` and exits 130; --resume finishes the run."""
    import signal
    import time

    runs = tmp_path / "runs"
    args = ["--profile", "quick", "--mode", "mars", "--model", "unet", "--set", "width=8",
            "--data", str(tiny_data), "--runs", str(runs), "--name", "t", "--epochs", "500",
            "--batch-size", "1", "--crop-size", "32", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "mars_cracknet.train", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = runs / "t" / "metrics.csv"
    deadline = time.time() + 240
    while not metrics.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert metrics.is_file(), proc.communicate()[0][-2000:]
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out[-2000:]
    assert "interrupted" in out
    assert (runs / "t" / "last.safetensors").is_file()
    assert (runs / "t" / "last.state.pt").is_file()
    from mars_cracknet.train import main as train_main

    n_done = len(metrics.read_text().splitlines()) - 1
    assert train_main(["--resume", str(runs / "t"), "--epochs", str(n_done + 1),
                       "--threads", "1"]) == 0
    assert json.loads((runs / "t" / "results.json").read_text())["epochs"] == n_done + 1
