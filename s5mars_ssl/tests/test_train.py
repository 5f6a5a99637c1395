import json
import subprocess
import sys

import pytest
import torch

from s5mars_ssl.augseg.trainer import train
from s5mars_ssl.augseg.utils.config import ConfigError, apply_overrides, load_config, validate
from s5mars_ssl.checkpoint import load_model

CFG = "s5mars_ssl/exps/quick/full.yaml"


def _tiny_cfg(root, iterations, **over):
    from s5mars_ssl.augseg.utils.config import PACKAGE_DIR

    cfg = load_config(PACKAGE_DIR / "exps" / "quick" / "full.yaml")
    ov = [f"dataset.root={root}", "dataset.split=splits/labeled_1_3.txt",
          "dataset.base_size=80", "dataset.crop_size=64", f"trainer.iterations={iterations}",
          "trainer.batch_labeled=1", "trainer.batch_unlabeled=1", "trainer.eval_every=0",
          "trainer.save_every=0", "criterion.ohem.min_kept=100", "semi.sammix.min_iou=0.0",
          "semi.sammix.min_area=20", "threads=2"]
    ov += [f"{k}={v}" for k, v in over.items()]
    cfg = apply_overrides(cfg, ov)
    validate(cfg)
    return cfg


def test_quick_and_paper_configs_resolve():
    from s5mars_ssl.augseg.utils.config import PACKAGE_DIR

    full = load_config(PACKAGE_DIR / "exps" / "s5mars" / "config_semi_mix.yaml")
    sup = load_config(PACKAGE_DIR / "exps" / "s5mars" / "config_supervised.yaml")
    quick = load_config(PACKAGE_DIR / "exps" / "quick" / "full.yaml")
    assert full["semi"]["sammix"]["min_iou"] == 0.97 and full["trainer"]["epochs"] == 240
    assert full["semi"]["soft_to_hard"]["tau_hard"] == -0.7
    assert not sup["semi"]["augin"]["enabled"] and full["reported"]["source"]
    assert quick["dataset"]["crop_size"] == 128 and quick["semi"]["augin"]["enabled"]
    for name in ("supervised", "mean_teacher", "augin", "sammix", "full"):
        validate(load_config(PACKAGE_DIR / "exps" / "quick" / f"{name}.yaml"))
    with pytest.raises(ConfigError, match="crop_size"):
        validate(apply_overrides(quick, ["dataset.crop_size=8"]))


def test_tiny_semi_run_checkpoints_and_resumes(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    res = train(_tiny_cfg(tiny_dataset, 2), run_dir, mode="semi", progress=False)
    assert 0.0 <= res["miou"] <= 1.0 and res["evaluated"] == "teacher"
    ck = torch.load(run_dir / "last.pt", weights_only=True)
    assert ck["iteration"] == 2 and ck["teacher"] is not None and ck["optimizer"]["state"]
    hist = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["iter"] for h in hist if "sup" in h] == [1, 2]
    assert all("unsup" in h and "pseudo_ratio" in h for h in hist if "sup" in h)
    assert (run_dir / "curves.png").stat().st_size > 1000
    teacher_before = ck["teacher"]["decoder.classifier.2.weight"].clone()
    res2 = train(_tiny_cfg(tiny_dataset, 3), run_dir, mode="semi", resume=True, progress=False)
    ck2 = torch.load(run_dir / "last.pt", weights_only=True)
    assert ck2["iteration"] == 3 and res2["iterations"] == 3
    hist = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["iter"] for h in hist if "sup" in h] == [1, 2, 3]  # continued, not restarted
    assert not torch.equal(ck2["teacher"]["decoder.classifier.2.weight"], teacher_before)
    assert "resumed from" in (run_dir / "log.txt").read_text()
    model, cfg, used = load_model(run_dir / "last.pt", "teacher")
    assert used == "teacher" and len(cfg["dataset"]["mean"]) == 3


def test_tiny_supervised_run_and_predict(tiny_dataset, tmp_path):
    run_dir = tmp_path / "sup"
    with pytest.raises(ValueError, match="batch_labeled"):
        train(_tiny_cfg(tiny_dataset, 1), run_dir, mode="supervised", progress=False)
    cfg = _tiny_cfg(tiny_dataset, 1, **{"trainer.batch_labeled": 2})
    res = train(cfg, run_dir, mode="supervised", progress=False)
    assert res["evaluated"] == "student"
    from s5mars_ssl.predict import predict_images

    img = sorted((tiny_dataset / "images").glob("*.jpg"))[0]
    files = predict_images(run_dir / "last.pt", [img], tmp_path / "pred", progress=False)
    names = sorted(f.name for f in files)
    assert names == [f"{img.stem}_ids.png", f"{img.stem}_mask.png", f"{img.stem}_overlay.png"]
    from PIL import Image

    assert Image.open(files[0]).size == (80, 64)
    files = predict_images(run_dir / "last.pt", [img], tmp_path / "pred2", sliding=True, crop=48,
                           stride=32, progress=False)
    assert len(files) == 3


def test_cli_user_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "s5mars_ssl.train_semi", "--config",
                          str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert out.returncode == 2 and "missing.yaml: config file not found" in out.stderr
    out = subprocess.run([sys.executable, "-m", "s5mars_ssl.train_supervised", "--config", CFG,
                          "--data-root", str(tmp_path / "nodata"), "--run-dir",
                          str(tmp_path / "r")], capture_output=True, text=True,
                         cwd=str(__import__("s5mars_ssl").__path__[0] + "/.."))
    assert out.returncode == 1 and "nodata: dataset folder not found" in out.stderr
    assert "Traceback" not in out.stderr
    img = tmp_path / "x.jpg"
    img.write_bytes(b"")
    out = subprocess.run([sys.executable, "-m", "s5mars_ssl.predict", "--checkpoint",
                          str(tmp_path / "none.pt"), "--input", str(img), "--out",
                          str(tmp_path / "p")], capture_output=True, text=True)
    assert out.returncode == 1 and "none.pt: checkpoint not found" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_torchrun_gloo_two_processes(tiny_dataset, tmp_path):
    """Two CPU processes under torchrun (gloo, DistributedDataParallel, DistributedSampler)."""
    from s5mars_ssl.augseg.utils.config import PACKAGE_DIR, REPO_ROOT

    sets = ["dataset.split=splits/labeled_1_3.txt", "dataset.base_size=80",
            "dataset.crop_size=64", "trainer.batch_labeled=1", "trainer.batch_unlabeled=1",
            "trainer.eval_every=0", "criterion.ohem.min_kept=100", "semi.sammix.min_iou=0.0",
            "semi.sammix.min_area=20", "threads=1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "s5mars_ssl.train_semi", "--config",
           str(PACKAGE_DIR / "exps" / "quick" / "full.yaml"), "--data-root", str(tiny_dataset),
           "--iterations", "1", "--run-dir", str(tmp_path / "ddp"), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "world=2" in (tmp_path / "ddp" / "log.txt").read_text()
    assert (tmp_path / "ddp" / "last.pt").is_file()
