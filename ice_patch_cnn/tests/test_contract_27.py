"""Issue 27 in the ice trainer: kill -9 during each file of ``last.keras`` + ``state.json``,
then --resume equals the uninterrupted run (it used to refuse for good); the run folder never
replaces its data; a damaged state.json is named."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ice_patch_cnn.tests.test_train import _chunks, _history, _tiny_config, _weights
from ice_patch_cnn.train import main
from shared.configs import REPO_ROOT as REPO

# The trainer in a child that SIGKILLs itself inside the second save of the checkpoint set:
# after last.keras, after state.json (before the manifest), or after the first rename.
_CHILD = r"""
import os, signal, sys
import keras
import shared.atomic as at

point, argv = sys.argv[1], sys.argv[2:]
seen = {"model": 0, "state": 0, "rename": 0}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_save = keras.Model.save
def save(self, path, *a, **k):
    real_save(self, path, *a, **k)
    if "-set." in str(path):
        seen["model"] += 1
        if point == "model" and seen["model"] == 2:
            die()
keras.Model.save = save

real_json = at.atomic_write_json
def write_json(path, obj, *a, **k):
    if str(path).endswith(".manifest.json"):
        seen["state"] += 1
        if point == "state" and seen["state"] == 2:
            die()
    return real_json(path, obj, *a, **k)
at.atomic_write_json = write_json

real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    if "-set." in str(src):
        seen["rename"] += 1
        if point == "rename" and seen["rename"] == 3:
            die()
os.replace = replace

from ice_patch_cnn.train import main
sys.exit(main(argv))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ice27")
    data, cfg = _chunks(tmp / "d"), _tiny_config(tmp)
    base = ["--data", str(data), "--config", str(cfg), "--epochs", "2", "--quiet"]
    assert main([*base, "--run-dir", str(tmp / "full")]) == 0
    return tmp, data, base


@pytest.mark.parametrize("point", ["model", "state",
                                   pytest.param("rename", marks=pytest.mark.slow)])
def test_kill_9_during_each_checkpoint_file_then_resume_equals_uninterrupted(setup, tmp_path,
                                                                             point):
    tmp, _, base = setup
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, point, *base, "--run-dir", str(cut)],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert main(["--run-dir", str(cut), "--resume", "--quiet"]) == 0
    assert _history(tmp / "full") == _history(cut)
    for wa, wb in zip(_weights(tmp / "full" / "last.keras"), _weights(cut / "last.keras")):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("case", ["overwrite_data", "run_in_data"])
def test_the_run_folder_never_replaces_its_data(setup, capsys, case):
    _, data, base = setup
    before = sorted(p.name for p in data.rglob("*"))
    run_dir = data if case == "overwrite_data" else data / "runs"
    assert main([*base, "--run-dir", str(run_dir), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in data.rglob("*")) == before


def test_truncated_state_json_is_named(setup, tmp_path, capsys):
    tmp, _, _ = setup
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tmp / "full", run)
    (run / "last.manifest.json").unlink()  # a run from before manifests: read as it is
    (run / "state.json").write_text('{"epochs_done": 2, "da')
    assert main(["--run-dir", str(run), "--resume", "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "state.json" in err and "--data is required" not in err and err.count("\n") == 1


@pytest.mark.parametrize("case", ["chunk_into_input", "survey_into_predictions",
                                  "survey_onto_truth"])
def test_no_cli_writes_into_its_inputs(tmp_path, capsys, case):
    from PIL import Image

    from ice_patch_cnn.chunk import main as chunk
    from ice_patch_cnn.survey import main as survey

    scenes, pred = tmp_path / "scenes", tmp_path / "pred"
    scenes.mkdir()
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(scenes / "a.png")
    (pred / "chunks").mkdir(parents=True)
    (pred / "chunks" / "a.csv").write_text("file,grid_row,grid_col,y,x,p\n")
    truth = tmp_path / "images.csv"  # a truth file where the survey writes its images.csv
    truth.write_text("name,truth,has_ice\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    rc = {
        "chunk_into_input": lambda: chunk([str(scenes), "--out", str(scenes / "chunks"),
                                           "--size", "32", "--no-progress"]),
        "survey_into_predictions": lambda: survey([str(pred), "--out", str(pred / "chunks")]),
        "survey_onto_truth": lambda: survey([str(pred), "--out", str(tmp_path),
                                             "--truth", str(truth)]),
    }[case]()
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_foreign_model_names_its_subproject(tmp_path):
    import keras

    from ice_patch_cnn.model import load_model
    from shared.errors import UserError

    inputs = keras.Input((16, 16, 3), name="image")  # what a crater ResNet-UNet starts with
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    model.save(tmp_path / "crater.keras")
    with pytest.raises(UserError, match="crater_resunet") as exc:
        load_model(tmp_path / "crater.keras")
    assert "crater.keras" in str(exc.value) and "\n" not in str(exc.value)


def test_malicious_last_keras_on_resume_is_one_line(setup, tmp_path, capfd):
    import shutil

    import keras

    tmp, _, _ = setup
    run = tmp_path / "run"
    shutil.copytree(tmp / "full", run)
    inputs = keras.Input((32, 32, 1), name="chunk")
    evil = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    evil.save(run / "last.keras")
    (run / "last.manifest.json").unlink()  # as if written by hand, not by the trainer
    capfd.readouterr()
    assert main(["--run-dir", str(run), "--resume", "--epochs", "1", "--quiet"]) == 2
    err = capfd.readouterr().err.strip()
    assert "last.keras" in err and len(err.splitlines()) == 1, err


def test_truncated_prediction_csv_is_one_line(tmp_path, capsys):
    from ice_patch_cnn.survey import main as survey

    (tmp_path / "pred" / "chunks").mkdir(parents=True)
    (tmp_path / "pred" / "chunks" / "a.csv").write_text(
        "file,grid_row,grid_col,y,x,p\na.png,0,0,0,0,0.5\nb.png,0,1")  # cut mid-row
    assert survey([str(tmp_path / "pred"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "a.csv: line 3" in err and err.count("\n") == 1 and "Traceback" not in err


def test_threads_are_kept_in_the_run_config_and_a_resume_with_others_is_refused(setup, tmp_path,
                                                                                 capsys):
    """The thread count can change a CPU run's arithmetic: config.yaml keeps the resolved
    count ($OMP_NUM_THREADS or 2 when none is given), and --resume with another one is one
    line (settings that change the run)."""
    import shutil

    import yaml

    from ice_patch_cnn.train import default_threads

    tmp, _, _ = setup
    run = tmp_path / "run"
    shutil.copytree(tmp / "full", run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["threads"] == default_threads()
    other = str(default_threads() + 1)
    capsys.readouterr()
    assert main(["--run-dir", str(run), "--resume", "--epochs", "1", "--threads", other,
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "differ from the run's config in train.threads" in err and err.count("\n") == 1
    assert yaml.safe_load((run / "config.yaml").read_text()) == saved
