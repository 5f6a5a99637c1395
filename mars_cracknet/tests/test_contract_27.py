"""Issue 27 in Mars-CrackNet: kill -9 during each file of the two-file checkpoint, no CLI writing
into its inputs, the shared image reader's bit depths and band counts, threads kept on resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mars_cracknet.checkpoint import read_weights, save_weights
from mars_cracknet.models import UNet
from shared.configs import REPO_ROOT as REPO


def _args(data, run_dir, epochs=2):
    return ["--config", "quick", "--mode", "mars", "--model", "unet", "--data", str(data),
            "--run-dir", str(run_dir), "--epochs", str(epochs), "--batch-size", "2",
            "--crop-size", "32", "--threads", "2", "--set", "width=8"]


# Runs the trainer and kills itself with SIGKILL inside the second save of last.* (end of
# epoch 2): after the weights file, after the state file, or after the first rename.
_CHILD = r"""
import os, signal, sys
import mars_cracknet.checkpoint as ck

point, argv = sys.argv[1], sys.argv[2:]
seen = {"weights": 0, "state": 0, "rename": 0}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def wrap(fn, key):
    def inner(path, *a, **k):
        out = fn(path, *a, **k)
        if "-set." in str(path):
            seen[key] += 1
            if point == key and seen[key] == 2:
                die()
        return out
    return inner

ck.save_weights = wrap(ck.save_weights, "weights")
ck.save_state = wrap(ck.save_state, "state")
real_replace = os.replace

def replace(src, dst):
    real_replace(src, dst)
    if "-set." in str(src):
        seen["rename"] += 1
        if point == "rename" and seen["rename"] == 3:
            die()

os.replace = replace
from mars_cracknet.train import main
sys.exit(main(argv))
"""


@pytest.fixture(scope="module")
def full_run(tiny_data, tmp_path_factory):
    from mars_cracknet.train import main

    run_dir = tmp_path_factory.mktemp("full") / "run"
    assert main(_args(tiny_data, run_dir)) == 0
    return run_dir


@pytest.mark.parametrize("point", ["weights", "state", "rename"])
def test_kill_9_during_each_checkpoint_file_then_resume_equals_uninterrupted(
        tiny_data, tmp_path, full_run, point):
    from mars_cracknet.train import main

    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, point, *_args(tiny_data, cut)],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert main(["--run-dir", str(cut), "--resume"]) == 0
    a, b = read_weights(full_run / "last.safetensors")[0], read_weights(cut / "last.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full_run / "history.csv").read_text() == (cut / "history.csv").read_text()


def test_resume_with_other_threads_is_refused_and_threads_are_saved(full_run, capsys):
    import yaml

    from mars_cracknet.train import main

    assert yaml.safe_load((full_run / "config.yaml").read_text())["threads"] == 2
    assert main(["--run-dir", str(full_run), "--resume", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "threads" in err and err.count("\n") == 1


# --------------------------------------------------------------------------- no CLI into inputs
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "best.safetensors"
    save_weights(path, UNet(1, width=8), "unet")
    return path


def _snapshot(*roots: Path) -> dict[str, bytes]:
    out = {}
    for root in roots:
        for p in ([root] if root.is_file() else sorted(root.rglob("*"))):
            if p.is_file():
                out[str(p)] = p.read_bytes()
    return out


@pytest.mark.parametrize("case", ["train_overwrite_data", "train_run_in_data",
                                  "predict_out_is_input", "predict_out_in_input",
                                  "convert_onto_source"])
def test_no_cli_writes_into_its_inputs(tiny_data, ckpt, tmp_path, capsys, case):
    from mars_cracknet.convert_checkpoint import main as convert
    from mars_cracknet.predict import main as predict
    from mars_cracknet.train import main as train

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(imgs / "a.png")
    before = _snapshot(tiny_data, ckpt, imgs)
    rc = {
        "train_overwrite_data": lambda: train([*_args(tiny_data, tiny_data, 1), "--overwrite"]),
        "train_run_in_data": lambda: train(_args(tiny_data, tiny_data / "runs" / "x", 1)),
        "predict_out_is_input": lambda: predict([str(ckpt), str(imgs), "--out", str(imgs)]),
        "predict_out_in_input": lambda: predict([str(ckpt), str(imgs), "--out",
                                                 str(imgs / "pred")]),
        "convert_onto_source": lambda: convert([str(ckpt), str(ckpt), "--overwrite"]),
    }[case]()
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert _snapshot(tiny_data, ckpt, imgs) == before
    assert not (tiny_data / "runs").exists() and not (imgs / "pred").exists()


# --------------------------------------------------------------------------- silent wrong
def test_16bit_grey_png_is_not_white_for_the_dataset_reader(tmp_path):
    from mars_cracknet.data.mars import load_image

    ramp = (np.arange(32 * 32).reshape(32, 32) * 50 + 500).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png")  # what train and predict read PNGs with
    assert (rgb == 255).mean() < 0.05 and rgb.std() > 40


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_64_band_raster_to_predict_is_an_error_naming_both(tmp_path, ckpt, capsys):
    import rasterio

    from mars_cracknet.predict import main as predict

    src = tmp_path / "emb.tif"
    with rasterio.open(src, "w", driver="GTiff", width=16, height=16, count=64,
                       dtype="float32") as dst:
        dst.write(np.ones((64, 16, 16), np.float32))
    assert predict([str(ckpt), str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "has 64 bands" in err and "Mars-CrackNet" in err and err.count("\n") == 1


def test_cub_is_a_raster_suffix():
    from mars_cracknet.predict import IMAGE_SUFFIXES, RASTER_SUFFIXES

    assert ".cub" in RASTER_SUFFIXES and ".cub" in IMAGE_SUFFIXES


@pytest.mark.parametrize("extra,match", [
    (["--set", "batch_size=0"], "at least 1"),
    (["--set", "lr=.nan"], "finite"),
    (["--threads", "0"], "threads"),
])
def test_meaningless_numbers_refused_before_the_run_folder(tiny_data, tmp_path, capsys, extra,
                                                           match):
    from mars_cracknet.train import main

    with pytest.raises(SystemExit) if extra[0] == "--threads" else _nothing():
        assert main([*_args(tiny_data, tmp_path / "r", 1), *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------------------- tracebacks
@pytest.mark.parametrize("case", ["synthetic_under_file", "pre_under_file",
                                  "analysis_into_masks", "pre_malformed_labelme"])
def test_outputs_and_inputs_problems_are_one_line(tmp_path, capsys, case):
    from mars_cracknet.analysis import main as analysis
    from mars_cracknet.data.pre import main as pre
    from mars_cracknet.data.synthetic import main as synthetic

    (tmp_path / "file").write_text("x")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "a.png")
    (tmp_path / "bad.json").write_text('{"shapes": [')
    rc = {
        "synthetic_under_file": lambda: synthetic(["--out", str(tmp_path / "file" / "d")]),
        "pre_under_file": lambda: pre(["labelme", str(tmp_path / "bad.json"), "--out",
                                       str(tmp_path / "file" / "d")]),
        "analysis_into_masks": lambda: analysis([str(masks), "--out", str(masks / "out")]),
        "pre_malformed_labelme": lambda: pre(["labelme", str(tmp_path / "bad.json"), "--out",
                                              str(tmp_path / "ds")]),
    }[case]()
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (masks / "out").exists()
