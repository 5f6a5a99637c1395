import pytest
import torch

from mars_cracknet.checkpoint import (
    CheckpointError,
    load_weights,
    read_weights,
    save_weights,
    transfer_autoencoder_weights,
)
from mars_cracknet.models import ResUNet, UNet


def test_autoencoder_transfer_keeps_first_channel():
    torch.manual_seed(0)
    ae = ResUNet(num_classes=3)
    seg = ResUNet(num_classes=1)
    transfer_autoencoder_weights(ae.state_dict(), seg)
    a, s = ae.state_dict(), seg.state_dict()
    assert torch.equal(s["head.weight"], a["head.weight"][:1])
    assert torch.equal(s["head.bias"], a["head.bias"][:1])
    for key in s:
        if not key.startswith("head."):
            assert torch.equal(s[key], a[key]), key


def test_transfer_rejects_other_model():
    with pytest.raises(CheckpointError):
        transfer_autoencoder_weights(UNet(3).state_dict(), ResUNet(1))


def test_weights_roundtrip_and_wrong_model(tmp_path):
    m = UNet(1)
    path = save_weights(tmp_path / "w.safetensors", m, "unet")
    _, meta = read_weights(path)
    assert meta["model"] == "unet"
    fresh = load_weights(path, UNet(1), "unet")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                  fresh.state_dict().values()))
    with pytest.raises(CheckpointError, match="for model 'unet', not 'resunet'"):
        load_weights(path, ResUNet(1), "resunet")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_weights(path, UNet(2))
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_weights(tmp_path / "bad.safetensors", UNet(1))


def _args(data, runs, name, epochs, model="unet", mode="mars", batch=4):
    # a narrow UNet (width 8) keeps the fast tests fast; ResUNet has its fixed widths
    return ["--profile", "quick", "--mode", mode, "--model", model, "--data", str(data),
            "--runs", str(runs), "--name", name, "--epochs", str(epochs), "--batch-size",
            str(batch), "--crop-size", "32", "--threads", "2",
            "--set", f"width={8 if model == 'unet' else 64}"]


def _weights(path):
    return read_weights(path)[0]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6, rtol=0), key


@pytest.mark.parametrize("model", ["unet", pytest.param("resunet", marks=pytest.mark.slow)])
def test_resume_equals_uninterrupted(tiny_data, tmp_path, model):
    import yaml

    from mars_cracknet.train import main

    runs = tmp_path / "runs"
    assert main(_args(tiny_data, runs, "full", 2, model)) == 0
    assert main(_args(tiny_data, runs, "part", 1, model)) == 0
    # continue the finished 1-epoch run for one more epoch
    assert main(["--resume", str(runs / "part"), "--epochs", "2", "--threads", "2"]) == 0
    cfg = yaml.safe_load((runs / "part" / "config.yml").read_text())
    assert cfg["epochs"] == 2 and cfg["width"] == (8 if model == "unet" else 64)
    _assert_same(_weights(runs / "full" / "last.safetensors"),
                 _weights(runs / "part" / "last.safetensors"))
    for name in ("config.yml", "metrics.csv", "curves.png", "best.safetensors",
                 "last.state.pt", "results.json"):
        assert (runs / "full" / name).is_file(), name
    header = (runs / "full" / "metrics.csv").read_text().splitlines()[0]
    for col in ("train_loss", "precision", "recall", "dice", "jaccard"):
        assert col in header


class _StopAfter:
    """A stand-in for the signal handler that asks to stop after ``n`` training steps."""

    def __init__(self, n):
        self.n = n

    @property
    def requested(self):
        self.n -= 1
        return self.n < 0


def test_interrupt_mid_epoch_then_resume(tiny_data, tmp_path):
    from mars_cracknet.config import load_config, validate
    from mars_cracknet.train import Dist, train_stage

    cfg = validate(load_config("quick", {"data": str(tiny_data), "batch_size": 2, "crop_size": 32,
                                         "model": "unet", "width": 8, "epochs": 1}))
    dist = Dist("cpu")
    kw = {"dataset_mode": "mars", "epochs": 1, "lr": 1e-3, "num_classes": 1,
          "evaluate_test": True}
    full = train_stage(cfg, tmp_path / "full", dist, **kw)
    assert not full["interrupted"]
    out = train_stage(cfg, tmp_path / "cut", dist, stopper=_StopAfter(1), **kw)
    assert out["interrupted"]
    assert (tmp_path / "cut" / "last.safetensors").is_file()
    again = train_stage(cfg, tmp_path / "cut", dist, **kw)
    assert not again["interrupted"]
    _assert_same(_weights(tmp_path / "full" / "last.safetensors"),
                 _weights(tmp_path / "cut" / "last.safetensors"))
    assert again["test"] == pytest.approx(full["test"])


def test_amp_bf16_on_cpu(tiny_data, tmp_path):
    import json

    from mars_cracknet.train import main

    assert main(_args(tiny_data, tmp_path / "runs", "amp", 1) + ["--amp"]) == 0
    res = json.loads((tmp_path / "runs" / "amp" / "results.json").read_text())
    assert torch.isfinite(torch.tensor(res["final_train_loss"]))
    assert "amp: true" in (tmp_path / "runs" / "amp" / "config.yml").read_text()


def test_loader_workers_after_opencv_ran_in_this_process(tiny_data, tmp_path):
    """Training with DataLoader workers (the paper profile's 2) in a process that has already
    used OpenCV's thread pool, as `reproduce` does when it draws the synthetic data first.
    OpenCV deadlocks in a forked worker that reconfigures that pool (e.g. cv2.setNumThreads),
    so a worker set-up of that kind would hang here; run in a child with a time limit."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, cv2\n"
        "a = np.random.default_rng(0).random((1500, 1500), dtype=np.float32)\n"
        "for _ in range(3): cv2.GaussianBlur(a, (21, 21), 5)\n"
        "from mars_cracknet.train import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    args = _args(tiny_data, tmp_path / "runs", "workers", 1) + ["--set", "num_workers=2"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "runs" / "workers" / "results.json").is_file()
