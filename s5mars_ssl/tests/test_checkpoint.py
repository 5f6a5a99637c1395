"""Our checkpoints and the original (AugSeg/S5Mars) files through load_model, the converter and
the CLIs. Original-layout state dicts are built from the key/shape list of the original files
(``tests/data/reference_checkpoints.json``) with random values (never the original code)."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s5mars_ssl.augseg.models import DeepLabV3Plus, load_pretrained_encoder
from s5mars_ssl.augseg.models.model_helper import PretrainedLoadError, original_key
from s5mars_ssl.checkpoint import (
    ORIGINAL_NORMALIZATION,
    CheckpointError,
    convert,
    load_model,
)
from shared.configs import REPO_ROOT as REPO

# the original files' key layouts (names, shapes, dtypes; no weights, no original code)
LAYOUTS = Path(__file__).resolve().parent / "data" / "reference_checkpoints.json"


def _layout(name):
    return [(k, tuple(s), d) for k, s, d in json.loads(LAYOUTS.read_text())[name]["state_dict"]]


def _random_state(name, seed):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape, dtype in _layout(name):
        if dtype == "int64":
            state[k] = torch.tensor(7)
        elif "running_var" in k:
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * 0.05
    return state


@pytest.fixture(scope="module")
def original_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("orig") / "ckpt_best.pth"
    torch.save({"epoch": 3, "model_state": _random_state("s5mars_ssl_checkpoint", 0),
                "optimizer_state": {}, "teacher_state": _random_state("s5mars_ssl_checkpoint", 1),
                "best_miou": 0.4}, path)
    return path


def test_original_checkpoint_loads_strictly_teacher_by_default(original_ckpt):
    raw = torch.load(original_ckpt, weights_only=True)
    teacher, info = load_model(original_ckpt)
    assert info["format"] == "original_checkpoint" and info["weights"] == "teacher"
    assert info["normalization"]["std"] == ORIGINAL_NORMALIZATION["std"] == [
        0.01803789, 0.01469946, 0.00991374]
    sd = teacher.state_dict()
    t = raw["teacher_state"]
    assert len(sd) == len(t) == 387
    assert torch.equal(sd["encoder.conv3.weight"], t["module.encoder.conv1.6.weight"])
    assert torch.equal(sd["encoder.bn3.running_var"], t["module.encoder.bn1.running_var"])
    # classifier input order: the original (low-level 48, ASPP 256), ours (ASPP 256, low 48)
    w = t["module.decoder.classifier.0.weight"]
    assert torch.equal(sd["decoder.classifier.0.0.weight"], torch.cat([w[:, 48:], w[:, :48]], 1))
    student, info = load_model(original_ckpt, "student")
    assert info["weights"] == "student"
    assert torch.equal(student.state_dict()["decoder.classifier.2.bias"],
                       raw["model_state"]["module.decoder.classifier.6.bias"])
    for k in t:  # every original key has its place
        assert original_key(k.removeprefix("module.")) in sd


def test_convert_then_load_gives_the_same_outputs(original_ckpt, tmp_path):
    direct, _ = load_model(original_ckpt)
    dst = tmp_path / "authors.pt"
    prov = convert(original_ckpt, dst)
    assert prov["source"] == "ckpt_best.pth" and len(prov["sha256"]) == 64
    assert prov["format"] == "original_checkpoint" and prov["epoch"] == 3
    conv, info = load_model(dst)
    assert info["format"] == "ours" and info["provenance"]["sha256"] == prov["sha256"]
    assert info["normalization"]["std"] == ORIGINAL_NORMALIZATION["std"]
    x = torch.randn(1, 3, 64, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(direct(x), conv(x))


def test_partial_foreign_truncated_and_malicious_files_are_refused(original_ckpt, tmp_path):
    raw = torch.load(original_ckpt, weights_only=True)
    t = dict(raw["teacher_state"])
    del t["module.decoder.head.0.weight"]
    t["module.decoder.extra.weight"] = torch.zeros(1)
    torch.save({**raw, "teacher_state": t}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial.pth: .*1 missing \(first: "
                                              r"decoder.head.0.weight\).*1 unexpected"):
        load_model(tmp_path / "partial.pth")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="foreign.pth: neither"):
        load_model(tmp_path / "foreign.pth")
    data = original_ckpt.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="trunc.pth: not a readable checkpoint"):
        load_model(tmp_path / "trunc.pth")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"teacher_state": Evil()}, fh)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_model(tmp_path / "evil.pth")
    assert not marker.exists()


def test_augseg_imagenet_encoder_loads_all_330_tensors(tmp_path):
    state = _random_state("s5mars_ssl_imagenet_encoder", 3)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(state, tmp_path / "resnet50.pth")
    model = DeepLabV3Plus(9)
    assert load_pretrained_encoder(model, tmp_path / "resnet50.pth", verbose=False) == 330
    assert torch.equal(model.encoder.conv2.weight, state["conv1.3.weight"])
    assert torch.equal(model.encoder.bn3.weight, state["bn1.weight"])
    del state["conv1.4.weight"]
    torch.save(state, tmp_path / "resnet50.pth")
    with pytest.raises(PretrainedLoadError, match=r"resnet50.pth: .*1 missing \(first: "
                                                  r"bn2.weight\)"):
        load_pretrained_encoder(DeepLabV3Plus(9), tmp_path / "resnet50.pth", verbose=False)


def test_clis_take_the_original_file(original_ckpt, tmp_path):
    from PIL import Image

    img = tmp_path / "rover.jpg"
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(img)
    cwd = str(REPO)
    out = subprocess.run([sys.executable, "-m", "s5mars_ssl.predict", "--checkpoint",
                          str(original_ckpt), "--input", str(img), "--out", str(tmp_path / "p")],
                         capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "p" / "rover_ids.png").is_file()
    out = subprocess.run([sys.executable, "-m", "s5mars_ssl.convert_checkpoint",
                          str(original_ckpt), str(tmp_path / "c.pt")],
                         capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0 and '"sha256"' in out.stdout
    out = subprocess.run([sys.executable, "-m", "s5mars_ssl.convert_checkpoint",
                          str(original_ckpt), str(original_ckpt)],
                         capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 2 and "would overwrite the input" in out.stderr


def test_trainer_initialisation_accepts_the_original_file(original_ckpt):
    from s5mars_ssl.augseg.trainer import _build_model
    from s5mars_ssl.augseg.utils.config import load_config

    cfg = load_config("quick", {"net.init": str(original_ckpt)})
    model = _build_model(cfg, torch.device("cpu"), False, False)
    teacher, _ = load_model(original_ckpt)
    ref = teacher.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    cfg = load_config("quick", {"net.init": str(original_ckpt), "net.init_weights": "student"})
    student, _ = load_model(original_ckpt, "student")
    got = _build_model(cfg, torch.device("cpu"), False, False).state_dict()
    assert torch.equal(got["decoder.classifier.2.weight"],
                       student.state_dict()["decoder.classifier.2.weight"])
