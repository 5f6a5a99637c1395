"""shared.keras_models: the one safe .keras loader (Keras/TensorFlow only in this process)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from shared.configs import REPO_ROOT as REPO
from shared.errors import UserError
from shared.keras_models import ModelFileError, check_keras_file, load_keras_model


@pytest.mark.parametrize("kind, fragment", [
    ("missing", "model file not found"),
    ("hdf5", "an HDF5 file, not a .keras archive"),
    ("text", "not a .keras model (not a zip archive"),
    ("torch", "a PyTorch checkpoint (torch.save zip), not a Keras model (no config.json"),
    ("zip", "not a .keras model (the zip archive has no config.json)"),
])
def test_what_is_not_a_keras_archive_is_one_named_line(tmp_path, kind, fragment):
    path = tmp_path / "m.keras"
    if kind == "hdf5":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    elif kind == "text":
        path.write_bytes(b"not a model")
    elif kind == "torch":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("weights.bin", b"0")
    with pytest.raises(ModelFileError) as info:
        check_keras_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and fragment in msg and "\n" not in msg
    assert issubclass(ModelFileError, UserError)


def test_importing_the_loader_imports_no_framework():
    code = "import sys, shared.keras_models; print('keras' in sys.modules, 'tensorflow' in " \
           "sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_safe_mode_refuses_code_and_another_subprojects_model(tmp_path):
    keras = pytest.importorskip("keras")
    inp = keras.Input((4,), name="x")
    out = keras.layers.Lambda(lambda t: t * 2.0)(inp)  # Python code inside the file
    keras.Model(inp, out).save(tmp_path / "lambda.keras")
    with pytest.raises(ModelFileError, match=r"lambda.keras: cannot load the model in safe "
                                             r"mode \(.*"):
        load_keras_model(tmp_path / "lambda.keras", "ice_patch_cnn")
    chunk = keras.Input((8, 8, 1), name="chunk")  # the ice classifier's input name
    model = keras.Model(chunk, keras.layers.Dense(1)(keras.layers.Flatten()(chunk)))
    model.save(tmp_path / "ice.keras")
    with pytest.raises(ModelFileError, match=r"ice.keras: a model of another subproject "
                                             r"\(ice_patch_cnn.*not a crater model"):
        load_keras_model(tmp_path / "ice.keras", "crater_resunet", "a crater model")
    loaded = load_keras_model(tmp_path / "ice.keras", "ice_patch_cnn")
    assert loaded.count_params() == model.count_params()
