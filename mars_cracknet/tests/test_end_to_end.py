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
from shared.configs import REPO_ROOT as REPO


def test_semi_train_predict_analyse(tiny_data, tmp_path):
    from mars_cracknet import analysis, predict
    from mars_cracknet.train import main as train_main

    run = tmp_path / "c"
    rc = train_main(["--profile", "quick", "--mode", "semi", "--model", "unet",
                     "--set", "width=8", "--data", str(tiny_data), "--run-dir", str(run),
                     "--epochs", "2", "--pretrain-epochs", "1",
                     "--batch-size", "2", "--crop-size", "32", "--lr", "1e-3", "--threads", "2"])
    assert rc == 0
    # stage 1: a 3-channel auto-encoder; stage 2: the 1-class network started from it
    pre = checkpoint_info(run / "pretrain.safetensors")
    assert pre == {"model": "unet", "num_classes": 3, "width": 8}
    assert checkpoint_info(run / "best.safetensors")["num_classes"] == 1
    res = json.loads((run / "summary.json").read_text())
    assert res["mode"] == "semi" and res["epochs"] == 2
    assert res["test_selected"]["n_images"] == 2
    for m in ("precision", "recall", "dice", "jaccard"):
        assert 0.0 <= res["test_selected"][m] <= 1.0
    rows = (run / "history.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("stage,epoch,train_loss")
    assert rows[1].startswith("pretrain,1,") and rows[3].startswith("train,2,")

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


@pytest.mark.parametrize("pretrain_data,n", [("mars_train", 3), ("earth_unlabelled", 2),
                                             ("unlabelled", 4)])
def test_autoencoder_data_and_targets(tiny_data, pretrain_data, n):
    """Stage 1 of scheme (c) learns to reproduce its (augmented) input; its data is the MIC
    training crops without the validation crops (original code), the unlabelled EDC images
    (paper wording) or all unlabelled images."""
    from mars_cracknet.config import load_config
    from mars_cracknet.train import build_datasets, stage_plan

    cfg = load_config("quick", {"data": str(tiny_data), "mode": "semi", "crop_size": 32,
                                "pretrain_data": pretrain_data})
    plan = stage_plan(cfg)
    assert plan[0]["ratio"] == 0.0 and plan[0]["classes"] == 3  # BCE only, as the original
    ds, _, _ = build_datasets(cfg, plan[0])
    x, y = ds[0]
    assert x.shape == y.shape == (3, 32, 32)
    assert torch.equal(x, y)
    assert len(ds) == n  # 4 crops - 1 validation; 2 unlabelled Earth; 2 Earth + 2 Mars


@pytest.mark.slow
def test_torchrun_two_processes(tiny_data, tmp_path):
    """The training script runs unchanged under torchrun with 2 CPU processes (gloo)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    assert torchrun.is_file(), torchrun
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "mars_cracknet.train",
           "--profile", "quick", "--mode", "earth_mars", "--model", "unet", "--set", "width=8",
           "--data", str(tiny_data), "--run-dir", str(tmp_path / "ddp"),
           "--epochs", "2", "--batch-size", "2", "--crop-size", "32", "--threads", "1",
           "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "ddp"
    res = json.loads((run / "summary.json").read_text())
    assert res["test_selected"]["n_images"] == 2  # metrics reduced over both ranks
    assert len((run / "history.csv").read_text().splitlines()) == 3
    state, _ = read_weights(run / "last.safetensors")
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    assert not list(run.glob(".*.tmp*"))  # only rank 0 wrote, atomically


@pytest.mark.slow
def test_sigterm_saves_last_and_resumes(tiny_data, tmp_path):
    """A real SIGTERM during training saves ``last`` and exits 130; --resume finishes the run."""
    import signal
    import time

    run = tmp_path / "t"
    args = ["--profile", "quick", "--mode", "mars", "--model", "unet", "--set", "width=8",
            "--data", str(tiny_data), "--run-dir", str(run), "--epochs", "500",
            "--batch-size", "1", "--crop-size", "32", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "mars_cracknet.train", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = run / "history.csv"
    deadline = time.time() + 240
    while not metrics.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert metrics.is_file(), proc.communicate()[0][-2000:]
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, out[-2000:]
    assert "SIGTERM" in out
    assert (run / "last.safetensors").is_file()
    assert (run / "last.state.pt").is_file()
    from mars_cracknet.train import main as train_main

    n_done = len(metrics.read_text().splitlines()) - 1
    assert train_main(["--run-dir", str(run), "--resume", "--epochs", str(n_done + 1),
                       "--threads", "1"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == n_done + 1
