import os
import signal
import subprocess
import sys

import pytest
import torch

from s5mars_ssl.augseg import trainer
from s5mars_ssl.augseg.utils.config import ConfigError, load_config, validate
from s5mars_ssl.checkpoint import load_model
from shared.errors import UserError
from shared.runs import RunDir, RunInterrupted

PKG_PARENT = str(__import__("pathlib").Path(__import__("s5mars_ssl").__path__[0]).parent)


def _tiny_cfg(root, iterations, profile="quick", split="splits/labeled_1_3.txt", **over):
    sets = {"dataset.root": str(root), "dataset.split": split, "dataset.base_size": 80,
            "dataset.crop_size": 64, "trainer.iterations": iterations,
            "trainer.batch_labeled": 2, "trainer.batch_unlabeled": 2, "trainer.eval_every": 0,
            "trainer.save_every": 0, "criterion.ohem.min_kept": 100,
            "semi.sammix.min_iou": 0.0, "semi.sammix.min_area": 20, "threads": 2, **over}
    cfg = load_config(profile, sets)
    validate(cfg)
    return cfg


@pytest.fixture(scope="module")
def one_of_four(tmp_path_factory):
    """4 training scenes, 1 labelled (split labeled_1_4.txt), 2 test scenes."""
    from s5mars_ssl.data.synthetic import generate
    from s5mars_ssl.sam_masks import run

    root = tmp_path_factory.mktemp("s5m4") / "synthetic"
    generate(root, n_train=4, n_test=2, height=64, width=80, labeled_every=4, seed=3,
             progress=False)
    run(root / "images", root / "sam_masks", progress=False)
    return root


def test_quick_and_paper_configs_resolve():
    full = load_config("paper")
    sup = load_config("paper_supervised")
    quick = load_config("quick")
    assert full["semi"]["sammix"]["min_iou"] == 0.97 and full["trainer"]["epochs"] == 240
    assert full["semi"]["soft_to_hard"]["tau_hard"] == -0.7
    assert full["trainer"]["poly_stop_epoch"] == 200 and full["dataset"]["resize"] == "square"
    assert full["dataset"]["eval_mode"] == "center_crop" and full["dataset"]["eval_crop"] == 1024
    assert full["dataset"]["std"] == [0.01803789, 0.01469946, 0.00991374]
    assert sup["mode"] == "supervised" and not sup["semi"]["augin"]["enabled"]
    assert quick["dataset"]["crop_size"] == 96 and quick["semi"]["augin"]["enabled"]
    for name in ("supervised", "mean_teacher", "augin", "sammix", "full"):
        validate(load_config(f"quick_{name}"))
    with pytest.raises(ConfigError, match="crop_size"):
        validate(load_config("quick", ["dataset.crop_size=8"]))
    with pytest.raises(ConfigError, match="unknown config key 'trainer.iteration'"):
        load_config("quick", ["trainer.iteration=10"])
    with pytest.raises(ConfigError, match="use_unlabeled_gt"):
        load_config("quick", ["semi.use_unlabeled_gt=true"])  # the switch no longer exists


def test_no_label_outside_the_split_reaches_a_loss(one_of_four, tmp_path, monkeypatch):
    """Split of 1 labelled image out of 4: the label files of the other 3 are never opened,
    and every unlabelled batch of theirs carries no label pixel."""
    import json

    import s5mars_ssl.augseg.dataset.mars as mars

    train = json.loads((one_of_four / "train.json").read_text())
    labelled = [train[int(i)] for i in
                (one_of_four / "splits" / "labeled_1_4.txt").read_text().split()]
    assert len(labelled) == 1
    opened = []
    real = mars.read_mask
    monkeypatch.setattr(mars, "read_mask", lambda p, **kw: opened.append(p.stem) or real(p, **kw))
    seen = []
    real_targets = trainer._unlabelled_targets

    def spy(job, ub):
        for idx, lbl in zip(ub["index"].tolist(), ub["label"]):
            seen.append((train[idx], int((lbl != 255).sum())))
        return real_targets(job, ub)

    monkeypatch.setattr(trainer, "_unlabelled_targets", spy)
    cfg = _tiny_cfg(one_of_four, 4, split="splits/labeled_1_4.txt")
    trainer.run(cfg, tmp_path / "run", progress=False)
    test = json.loads((one_of_four / "test.json").read_text())
    assert set(opened) <= set(labelled) | set(test)
    assert set(opened) & set(labelled)
    assert {s for s, _ in seen} == set(train)  # the unlabelled stream: all training images
    assert all(n == 0 for s, n in seen if s not in labelled)
    assert any(n > 0 for s, n in seen if s in labelled)


def _weights(path):
    ck = torch.load(path, weights_only=True)
    return ck


def test_resume_after_sigterm_equals_uninterrupted(tiny_dataset, tmp_path, monkeypatch):
    cfg = _tiny_cfg(tiny_dataset, 4)  # 3 iterations per epoch: the signal comes mid-epoch
    trainer.run(cfg, tmp_path / "a", progress=False)
    real_step = trainer.train_step
    calls = []

    def step_then_signal(job, lb, ub):
        rec = real_step(job, lb, ub)
        calls.append(job.it)
        if job.it == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return rec

    monkeypatch.setattr(trainer, "train_step", step_then_signal)
    with pytest.raises(RunInterrupted) as exc:
        trainer.run(cfg, tmp_path / "b", progress=False)
    assert exc.value.exit_code == 143 and calls == [1, 2]
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["iteration"] == 2
    monkeypatch.setattr(trainer, "train_step", real_step)
    res = trainer.run(cfg, tmp_path / "b", resume=True, progress=False)
    a, b = _weights(tmp_path / "a" / "last.pt"), _weights(tmp_path / "b" / "last.pt")
    for part in ("student", "teacher"):
        diff = max((a[part][k].double() - b[part][k].double()).abs().max().item()
                   for k in a[part])
        assert diff == 0.0, f"{part} differs by {diff}"
    assert a["history"] == b["history"]
    ra = __import__("json").loads((tmp_path / "a" / "summary.json").read_text())
    assert ra["miou"] == res["miou"]
    assert (tmp_path / "b" / "history.csv").read_text() == (tmp_path / "a" /
                                                            "history.csv").read_text()


def test_run_folder_reuse_is_refused_and_locked(tiny_dataset, tmp_path):
    cfg = _tiny_cfg(tiny_dataset, 1, profile="quick_supervised")
    trainer.run(cfg, tmp_path / "r", progress=False)
    with pytest.raises(UserError, match="not empty"):
        trainer.run(cfg, tmp_path / "r", progress=False)
    with pytest.raises(UserError, match="differ"):
        trainer.run(_tiny_cfg(tiny_dataset, 2, profile="quick_supervised",
                              **{"trainer.lr": 0.5}), tmp_path / "r", resume=True,
                    progress=False)
    held, _ = RunDir.open(tmp_path / "locked", cfg)
    try:
        with pytest.raises(UserError, match="another run"):
            trainer.run(cfg, tmp_path / "locked", resume=True, progress=False)
    finally:
        held.close()
    model, info = load_model(tmp_path / "r" / "last.pt", "teacher")
    assert info["weights"] == "student" and info["format"] == "ours"
    assert info["normalization"]["mean"] == info["config"]["dataset"]["mean"]


def test_tiny_supervised_run_and_predict(tiny_dataset, tmp_path):
    with pytest.raises(UserError, match="batch_labeled"):
        trainer.run(_tiny_cfg(tiny_dataset, 1, profile="quick_supervised",
                              **{"trainer.batch_labeled": 1}), tmp_path / "s1", progress=False)
    cfg = _tiny_cfg(tiny_dataset, 1, profile="quick_supervised")
    res = trainer.run(cfg, tmp_path / "sup", progress=False)
    assert res["evaluated"] == "student" and 0 <= res["miou_all"] <= res["miou"] <= 1
    for name in ("config.yaml", "history.csv", "train.log", "last.pt", "best.pt",
                 "summary.json", "curves.png"):
        assert (tmp_path / "sup" / name).is_file(), name
    # the resolved precision (the quick profile's auto: bf16 where the CPU has native bf16)
    # and the CPU it resolved against
    import json

    import yaml

    from shared.precision import cpu_has_native_bf16

    saved = yaml.safe_load((tmp_path / "sup" / "config.yaml").read_text())
    summary = json.loads((tmp_path / "sup" / "summary.json").read_text())
    assert saved["trainer"]["precision"] == summary["precision"] == \
        ("bf16" if cpu_has_native_bf16() else "fp32")
    assert saved["machine"]["native_bf16"] == cpu_has_native_bf16()
    assert summary["machine"]["native_bf16"] == cpu_has_native_bf16()
    from s5mars_ssl.predict import predict_images

    img = sorted((tiny_dataset / "images").glob("*.jpg"))[0]
    files = predict_images(tmp_path / "sup" / "last.pt", [img], tmp_path / "pred",
                           progress=False)
    names = sorted(f.name for f in files)
    assert names == [f"{img.stem}_ids.png", f"{img.stem}_mask.png", f"{img.stem}_overlay.png"]
    from PIL import Image

    assert Image.open(files[0]).size == (80, 64)
    files = predict_images(tmp_path / "sup" / "last.pt", [img], tmp_path / "pred2",
                           sliding=True, crop=48, stride=32, progress=False)
    assert len(files) == 3


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd or PKG_PARENT)


def test_cli_user_errors(tmp_path):
    out = _cli("s5mars_ssl.train_semi", "--config", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "missing.yaml: config file not found" in out.stderr
    out = _cli("s5mars_ssl.train_semi", "--set", "trainer.iteration=10", "--run-dir",
               str(tmp_path / "r0"))
    assert out.returncode == 2 and "unknown config key 'trainer.iteration'" in out.stderr
    out = _cli("s5mars_ssl.train_supervised", "--data-root", str(tmp_path / "nodata"),
               "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and "nodata: dataset folder not found" in out.stderr
    img = tmp_path / "x.jpg"
    img.write_bytes(b"")
    out = _cli("s5mars_ssl.predict", "--checkpoint", str(tmp_path / "none.pt"), "--input",
               str(img), "--out", str(tmp_path / "p"))
    assert out.returncode == 2 and "none.pt: checkpoint not found" in out.stderr
    for o in (out,):
        assert "Traceback" not in o.stderr


def test_predict_names_a_64_band_image(tiny_dataset, tmp_path):
    import numpy as np
    import rasterio

    from s5mars_ssl.predict import read_rgb

    path = tmp_path / "emb.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=64,
                       dtype="float32") as dst:
        dst.write(np.zeros((64, 8, 8), np.float32))
    with pytest.raises(UserError, match="emb.tif: 64-band image"):
        read_rgb(path)


@pytest.mark.slow
def test_torchrun_gloo_two_processes(tiny_dataset, tmp_path):
    """Two CPU processes under torchrun (gloo, DistributedDataParallel, sharded epochs)."""
    sets = ["dataset.split=splits/labeled_1_3.txt", "dataset.base_size=80",
            "dataset.crop_size=64", "trainer.batch_labeled=1", "trainer.batch_unlabeled=1",
            "trainer.eval_every=0", "criterion.ohem.min_kept=100", "semi.sammix.min_iou=0.0",
            "semi.sammix.min_area=20", "threads=1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "s5mars_ssl.train_semi", "--config", "quick", "--data-root", str(tiny_dataset),
           "--iterations", "1", "--run-dir", str(tmp_path / "ddp"), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=PKG_PARENT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "world=2" in (tmp_path / "ddp" / "train.log").read_text()
    assert (tmp_path / "ddp" / "last.pt").is_file()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mknod, (str(self.marker),))


def test_resume_reads_last_pt_weights_only_and_bf16_runs(tiny_dataset, tmp_path):
    """The trainer's own resume goes through the one safe loader: a last.pt that would run
    code is refused (one line naming it) and nothing runs; ``trainer.precision=bf16`` trains
    under bf16 autocast and is recorded."""
    cfg = _tiny_cfg(tiny_dataset, 1, profile="quick_supervised",
                    **{"trainer.precision": "bf16"})
    res = trainer.run(cfg, tmp_path / "r", progress=False)
    assert res["precision"] == "bf16"
    last = tmp_path / "r" / "last.pt"
    state = torch.load(last, weights_only=True)
    marker = tmp_path / "executed"
    state["history"] = _RunsCode(marker)
    torch.save(state, last)
    with pytest.raises(UserError, match=r"last.pt: not a readable training state: refused"):
        trainer.run(cfg, tmp_path / "r", resume=True, progress=False)
    assert not marker.exists()
