"""The run contract for dune_vlm/train.py (shared.runs) and the dune data cases."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from dune_vlm.tests.conftest import make_separable_dataset
from dune_vlm.train import main as train_main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dunes_contract")
    make_separable_dataset(root, n=(4, 1, 1), size=32)
    emb = np.random.default_rng(0).normal(size=(10, 16)).astype(np.float32)
    np.save(root / "text.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    return root


def args(data, run, *extra, model="baseline", epochs=2):
    text = ["--text_embed_path", str(data / "text.npy")] if model == "fusion" else []
    return ["--config", "quick", "--data_root", str(data), "--model", model, *text,
            "--epochs", str(epochs),
            "--batch_size", "2", "--seed", "5", "--run-dir", str(run), "--no_progress", *extra]


def test_used_run_folder_is_refused_then_overwritten(data, tmp_path, capsys):
    run = tmp_path / "r"
    assert train_main(args(data, run, epochs=1)) == 0
    before = (run / "last.pt").read_bytes()
    assert train_main(args(data, run, epochs=1)) == 2
    assert "run folder is not empty" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == before
    assert train_main(args(data, run, "--overwrite", epochs=1)) == 0


def test_lock_refuses_a_concurrent_run(data, tmp_path, capsys):
    from shared.runs import RunDir

    run = tmp_path / "r"
    run_dir, _ = RunDir.open(run, {"x": 1})
    with run_dir:
        assert train_main(args(data, run, "--overwrite", epochs=1)) == 2
    assert "another run is using this run folder" in capsys.readouterr().err


@pytest.mark.parametrize("extra, msg", [
    (["--set", "train.epoch=3"], "unknown config key 'train.epoch'"),
    (["--set", "nope=1"], "unknown config key 'nope'"),
])
def test_unknown_keys_refused(data, tmp_path, capsys, extra, msg):
    assert train_main(args(data, tmp_path / "r", *extra)) == 2
    assert msg in capsys.readouterr().err


def test_unknown_key_in_yaml_and_missing_text_path(data, tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text("inherit: quick\ntrain:\n  epochz: 2\n")
    assert train_main(["--config", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert "train.epochz" in capsys.readouterr().err
    root = tmp_path / "own.yml"  # a YAML without inherit: still checked against paper.yml
    root.write_text("data: {root: x}\ntext: {}\nmodel: {name: fusion}\ntrain: {epochs: 1}\n"
                    "extra_key: 1\n")
    assert train_main(["--config", str(root), "--run-dir", str(tmp_path / "r")]) == 2
    assert "extra_key" in capsys.readouterr().err
    nt = tmp_path / "notext.yml"
    nt.write_text("inherit: quick\ntext:\n  embed_path: null\n")
    assert train_main(["--config", str(nt), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "text.embed_path is missing" in err and "Traceback" not in err


def test_sigterm_mid_epoch_then_resume_is_bit_identical(data, tmp_path, monkeypatch):
    from dune_vlm.utils.dataset import DuneDataset

    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_main(args(data, full, model="fusion", epochs=3)) == 0
    orig = DuneDataset.__getitem__
    calls = {"n": 0}

    def getitem(self, i):
        calls["n"] += self.augment  # training tiles only
        if self.augment and calls["n"] == 10:  # epoch 3 (4 tiles per epoch), second batch
            os.kill(os.getpid(), signal.SIGTERM)
        return orig(self, i)

    monkeypatch.setattr(DuneDataset, "__getitem__", getitem)
    rc = train_main(args(data, cut, model="fusion", epochs=3))
    assert rc == 143, calls
    monkeypatch.setattr(DuneDataset, "__getitem__", orig)
    assert torch.load(cut / "last.pt", weights_only=True)["epoch"] == 2
    assert train_main(["--run-dir", str(cut), "--resume", "--no_progress"]) == 0
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(cut / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    strip = [",".join(line.split(",")[:-2]) for line in  # drop the timing columns
             (full / "history.csv").read_text().splitlines()]
    assert strip == [",".join(line.split(",")[:-2]) for line in
                     (cut / "history.csv").read_text().splitlines()]


def test_resume_with_other_settings_refused(data, tmp_path, capsys):
    run = tmp_path / "r"
    assert train_main(args(data, run, epochs=1)) == 0
    assert train_main(args(data, run, "--resume", "--lr", "0.1", epochs=1)) == 2
    assert "differ from the run's config in train.lr" in capsys.readouterr().err


def test_same_seed_twice_identical(data, tmp_path):
    from dune_vlm.train import run
    from dune_vlm.utils.config import load_run_config

    cfg = load_run_config("quick", [f"data.root={data}", "model.name=baseline",
                                    "train.epochs=1", "train.batch_size=2", "train.seed=1"])
    a = run(cfg, tmp_path / "a")
    b = run(cfg, tmp_path / "b")
    assert a["best_val_mIoU_ref"] == b["best_val_mIoU_ref"]
    assert (tmp_path / "a/history.csv").read_text().split(",")[:8] == \
        (tmp_path / "b/history.csv").read_text().split(",")[:8]


def test_help_and_aliases():
    out = subprocess.run([sys.executable, "dune_vlm/train.py", "--help"], capture_output=True,
                         text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(
                             os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0
    for flag in ("--config", "--run-dir", "--resume", "--overwrite", "--set", "--data",
                 "--precision", "--no-progress"):
        assert flag in out.stdout
    for old in ("--profile", "--run_dir", "--save_dir", "--data_root", "--amp", "--no_progress"):
        # the reference's spellings parse but stay out of the usage and the option list
        assert f"[{old}" not in out.stdout and f"\n  {old}" not in out.stdout
    from dune_vlm.train import build_parser

    a = build_parser().parse_args(["--profile", "quick", "--save_dir", "r", "--data_root", "d",
                                   "--model", "baseline", "--amp", "--no_progress"])
    assert (a.config, str(a.run_dir), a.data_root, a.model, a.precision, a.no_progress) == \
        ("quick", "r", "d", "baseline", "bf16", True)


def test_init_from_checkpoint_and_mismatch_refused(data, tmp_path, capsys):
    import json

    assert train_main(args(data, tmp_path / "a", epochs=1)) == 0
    capsys.readouterr()
    assert train_main(args(data, tmp_path / "b", "--init", str(tmp_path / "a/best.pt"),
                           epochs=1)) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epochs"] == 1
    assert train_main(args(data, tmp_path / "c", "--init", str(tmp_path / "a/best.pt"),
                           model="fusion", epochs=1)) == 2
    assert "weights do not fit the model" in capsys.readouterr().err


def test_text_embed_path_for_the_baseline_is_refused(data, tmp_path, capsys):
    """A flag that would be silently ignored (the baseline takes no text) is an error."""
    rc = train_main([*args(data, tmp_path / "b", epochs=1), "--text_embed_path",
                     str(data / "text.npy")])
    assert rc == 2 and "takes no text" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_threads_are_kept_in_the_run_config_and_a_resume_with_others_is_refused(data, tmp_path,
                                                                                 capsys):
    """The thread count can change the last digits of the weights: config.yaml keeps the
    resolved count, and --resume with another one is one line (issue 27)."""
    import yaml

    run = tmp_path / "r"
    assert train_main(args(data, run, "--threads", "1", epochs=1)) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["threads"] == 1
    capsys.readouterr()
    assert train_main(["--run-dir", str(run), "--resume", "--threads", "2", "--no_progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "differ from the run's config in train.threads" in err and len(err.splitlines()) == 1
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["threads"] == 1


def test_precision_is_a_config_key_resolved_into_config_yaml(data, tmp_path, capsys):
    """``train.precision`` (issue 25/29): the old ``train.amp: true`` means bf16, the resolved
    value and the CPU it was resolved against go into config.yaml and summary.json, and
    ``--precision auto`` resolves by the CPU's native bf16 flag."""
    import json

    import yaml

    from shared.precision import cpu_has_native_bf16

    run = tmp_path / "legacy"
    assert train_main(args(data, run, "--set", "train.amp=true", epochs=1)) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert saved["train"]["precision"] == summary["precision"] == "bf16"
    assert saved["train"]["amp"] is None
    assert saved["machine"]["native_bf16"] == summary["machine"]["native_bf16"] == \
        cpu_has_native_bf16()
    run = tmp_path / "auto"
    assert train_main(args(data, run, "--precision", "auto", epochs=1)) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    capsys.readouterr()
    assert train_main(args(data, tmp_path / "bad", "--set", "train.precision=fp8")) == 2
    assert "precision='fp8' is invalid" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_gloo_two_processes(data, tmp_path):
    """Two CPU processes under torchrun: shared.torch_runtime joins a gloo group, the sampler
    shards the tiles, validation confusion matrices are summed, only rank 0 writes."""
    import json

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "dune_vlm.train", *args(data, tmp_path / "ddp", "--threads", "1", epochs=1)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "world size 2" in (tmp_path / "ddp" / "train.log").read_text()
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["epochs"] == 1
