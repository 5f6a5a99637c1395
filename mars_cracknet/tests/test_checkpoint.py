"""Original-format checkpoints (torch.save(net.state_dict()) of the original Res_UNet / UNet),
built with random values from the key layout (names, shapes, order) of the original files,
listed in tests/data/reference_checkpoints.json (a layout listing, no weights, no original
code)."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mars_cracknet.checkpoint import CheckpointError, load_model, read_any

SPEC = Path(__file__).resolve().parent / "data" / "reference_checkpoints.json"
FORMATS = {"resunet": "mars_cracknet_resunet", "unet": "mars_cracknet_unet"}


def _layout(name):
    return json.loads(SPEC.read_text())[FORMATS[name]]["state_dict"]


def original_state(name, seed=0, prefix=""):
    """A state dict in the original layout and order, random values (BN variances > 0)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in _layout(name):
        if dtype == "int64":
            state[prefix + key] = torch.tensor(7, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[prefix + key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[prefix + key] = (torch.rand(shape, generator=g) - 0.5) * 0.2
    return state


@pytest.fixture(scope="module", params=["resunet", "unet"])
def original_file(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("orig") / f"{request.param}_100.pth"
    torch.save(original_state(request.param), path)
    return request.param, path


def test_original_file_loads_strictly_every_tensor_placed(original_file):
    name, path = original_file
    model, got = load_model(path)
    assert got == name and not model.training
    ours = model.state_dict()
    orig = original_state(name)
    assert len(ours) == len(orig)
    # every original tensor sits somewhere in our model, with its values
    flat = {tuple(v.flatten()[:6].tolist()) + (tuple(v.shape),) for v in ours.values()}
    for key, value in orig.items():
        assert tuple(value.flatten()[:6].tolist()) + (tuple(value.shape),) in flat, key


def test_module_prefix_and_legacy_wrapping_accepted(tmp_path):
    path = tmp_path / "dp.pth"
    torch.save({"state_dict": original_state("unet", prefix="module.")}, path)
    assert load_model(path)[1] == "unet"


def test_convert_then_load_gives_the_same_outputs(original_file, tmp_path):
    from mars_cracknet.checkpoint import read_weights
    from mars_cracknet.convert_checkpoint import main

    name, path = original_file
    dst = tmp_path / "converted.safetensors"
    assert main([str(path), str(dst)]) == 0
    _, meta = read_weights(dst)
    assert meta["source_name"] == path.name and meta["source_format"] == f"original_{name}"
    import hashlib

    assert meta["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    direct, _ = load_model(path)
    converted, _ = load_model(dst)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(direct(x), converted(x))
    assert main([str(path), str(dst)]) == 2  # no silent overwrite


def test_predict_cli_accepts_an_original_file(original_file, tmp_path):
    from mars_cracknet.predict import main

    _, path = original_file
    img = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(img)
    assert main([str(path), str(img), "--out", str(tmp_path / "out")]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "in_mask.png")).shape == (64, 64)


def test_train_initialises_from_an_original_file(tiny_data, tmp_path):
    """An original UNet(1) file (width 64) initialises our UNet; the run then trains on."""
    from mars_cracknet.checkpoint import init_from
    from mars_cracknet.config import load_config
    from mars_cracknet.train import Dist, build, stage_plan

    path = tmp_path / "unet.pth"
    torch.save(original_state("unet"), path)
    cfg = load_config("quick", {"data": str(tiny_data), "model": "unet", "width": 64,
                                "crop_size": 32, "init_weights": str(path)})
    r = build(cfg, stage_plan(cfg)[0], Dist("cpu"))
    assert init_from(path, r.model) == "original_unet"
    assert torch.equal(r.model.state_dict()["head.weight"],
                       original_state("unet")["outc.conv.weight"])


@pytest.mark.parametrize("damage", ["truncated", "partial", "foreign", "wrong_shape"])
def test_damaged_files_are_named_errors(tmp_path, capsys, damage):
    from mars_cracknet.predict import main

    state = original_state("unet")
    path = tmp_path / f"{damage}.pth"
    if damage == "truncated":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "partial":
        state.pop("up4.conv.conv.0.weight")
        torch.save(state, path)
    elif damage == "foreign":
        torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    else:
        state["outc.conv.weight"] = torch.zeros(1, 32, 1, 1)
        torch.save(state, path)
    with pytest.raises(CheckpointError, match=damage):
        load_model(path)
    img = tmp_path / "in.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    assert main([str(path), str(img), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}") and "\n" not in err
    if damage == "partial":
        assert "1 missing (first: up4.conv.0.weight)" in err


class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_code_running_pickle_is_refused(tmp_path):
    marker = tmp_path / "executed"
    evil = _RunsCode()
    evil.marker = str(marker)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"inc.conv.conv.0.weight": evil}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="evil.pth"):
        read_any(path)
    torch.save({"x": evil}, tmp_path / "evil_zip.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        read_any(tmp_path / "evil_zip.pth")
    assert not marker.exists()


def test_metric_edge_cases_as_the_original():
    from mars_cracknet.utils.metrics import scores

    empty = np.zeros((4, 4), bool)
    # empty prediction of an empty mask: precision 0, recall 0, Dice 0, Jaccard 1
    assert scores(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "dice": 0.0, "jaccard": 1.0}
    # empty prediction of a crack: precision 0
    assert scores(0, 0, 5)["precision"] == 0.0
    assert scores(2, 2, 0) == {"precision": 0.5, "recall": 1.0, "dice": 2 / 3, "jaccard": 0.5}
    assert empty.sum() == 0
