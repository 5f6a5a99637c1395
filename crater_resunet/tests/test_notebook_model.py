"""A .keras file saved the way the original notebook saves it loads in predict (safe mode);
files that are not Keras models give one line naming them."""

import zipfile

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

from crater_resunet import predict
from crater_resunet.model import build_resunet

NOTEBOOK_NAMES = ("dice_bce_loss", "f1_score", "precision", "recall", "dice_coefficient")


def _notebook_objects():
    """Functions registered under the notebook's names (package "Custom", its default)."""

    @keras.saving.register_keras_serializable()
    def dice_coefficient(y_true, y_pred, smooth=1e-7):
        inter = ops.sum(y_true * y_pred)
        return (2.0 * inter + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)

    @keras.saving.register_keras_serializable()
    def precision(y_true, y_pred):
        return ops.sum(y_true * y_pred) / (ops.sum(y_pred) + 1e-7)

    @keras.saving.register_keras_serializable()
    def recall(y_true, y_pred):
        return ops.sum(y_true * y_pred) / (ops.sum(y_true) + 1e-7)

    @keras.saving.register_keras_serializable()
    def f1_score(y_true, y_pred):
        p, r = precision(y_true, y_pred), recall(y_true, y_pred)
        return 2 * p * r / (p + r + 1e-7)

    @keras.saving.register_keras_serializable()
    def dice_bce_loss(y_true, y_pred):
        bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
        return 0.5 * bce + 0.5 * (1 - dice_coefficient(y_true, y_pred, 1.0))

    return dice_bce_loss, [dice_coefficient, f1_score, precision, recall]


def _unregister():
    objs = keras.saving.get_custom_objects()
    for name in NOTEBOOK_NAMES:
        objs.pop(f"Custom>{name}", None)


def test_notebook_keras_file_loads_in_predict(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    loss, metrics = _notebook_objects()
    model = build_resunet((64, 64, 3), base_filters=2)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss,
                  metrics=["accuracy", *metrics], run_eagerly=True)  # no ~30 s tracing
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    y = (x[..., :1] > 0.5).astype("float32")
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)  # a trained, compiled notebook model
    path = tmp_path / "crater_detection_model0.95.keras"
    model.save(path)
    _unregister()  # the user's process does not have the notebook's functions
    with zipfile.ZipFile(path) as zf:
        assert "Custom>dice_bce_loss" in zf.read("config.json").decode()
    img = tmp_path / "img.png"
    Image.fromarray((x[0] * 255).astype("uint8")).save(img)
    rc = predict.cli([str(img), "--model", str(path), "--out", str(tmp_path / "out"),
                       "--max-figures", "0"])
    assert rc == 0, capsys.readouterr().err
    prob = np.asarray(Image.open(tmp_path / "out" / "masks" / "img_prob.png"))
    assert prob.shape == (64, 64)


@pytest.mark.parametrize("kind, fragment", [
    ("torch", "a PyTorch checkpoint (torch.save zip), not a Keras model"),
    ("text", "not a zip archive"),
    ("zip", "has no config.json"),
])
def test_foreign_model_files_are_one_named_line(tmp_path, capsys, kind, fragment):
    path = tmp_path / "model.keras"
    if kind == "torch":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
            zf.writestr("archive/version", "3\n")
    elif kind == "text":
        path.write_bytes(b"not a model")
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("weights.bin", b"0")
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    rc = predict.cli([str(img), "--model", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"{path}: " in err and fragment in err


def test_cli_error_is_one_line_on_the_real_stderr(tmp_path):
    """In a fresh process TensorFlow's native start-up lines go to fd 2 at import; the CLI
    keeps them off, so the user sees only the error line."""
    import os
    import subprocess
    import sys

    path = tmp_path / "model.keras"
    path.write_bytes(b"not a model")
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    p = subprocess.run([sys.executable, "-m", "crater_resunet.predict", str(img), "--model",
                        str(path), "--out", str(tmp_path / "o")], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"error: {path}: ")
