"""The one safe ``.keras`` loader of the Keras subprojects (crater_resunet, ice_patch_cnn).

:func:`check_keras_file` refuses, with one line naming the file, what is not a ``.keras``
archive (missing, truncated, HDF5, a PyTorch checkpoint renamed ``.keras``, any other zip, a
bad CRC); :func:`load_keras_model` then refuses a model of another subproject (read from
``config.json`` without deserialising anything) and loads in Keras safe mode
(``safe_mode=True``: no lambda or other code in the file is run), with Keras' noise held back.
Every refusal is a :class:`ModelFileError` (a ``shared.errors.UserError``: one line, exit 2).
Keras is imported inside the loader, so importing this module costs nothing.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from shared.errors import UserError

SUFFIX = ".keras"


class ModelFileError(UserError):
    """A model file that is not a loadable ``.keras`` model; the message names the file."""


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


def check_keras_file(path: str | os.PathLike) -> Path:
    """``path`` when it is a ``.keras`` archive; else one :class:`ModelFileError` line."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x89HDF"):
        raise ModelFileError(f"{path}: an HDF5 file, not a .keras archive (rename it to .h5 "
                             "if it is a legacy Keras model)")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a .keras model (not a zip archive: truncated or "
                             "another format)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path}: not a readable .keras archive ({exc})") from None
    if any(n.endswith("data.pkl") for n in names):
        raise ModelFileError(f"{path}: a PyTorch checkpoint (torch.save zip), not a Keras "
                             "model (no config.json in the archive); this package needs a "
                             ".keras file saved by Keras")
    if "config.json" not in names:
        raise ModelFileError(f"{path}: not a .keras model (the zip archive has no config.json)")
    if bad is not None:
        raise ModelFileError(f"{path}: corrupt .keras archive (bad CRC in {bad})")
    return path


def load_keras_model(path: str | os.PathLike, owner: str, what: str = "model",
                     compile: bool = False) -> Any:
    """The Keras model in ``path``, loaded in safe mode.

    ``owner``: the subproject the model must belong to (``crater_resunet``,
    ``ice_patch_cnn``); a model recognised as another's is refused (``what`` names the
    expected kind in that message). ``compile=True`` restores the optimizer and its state (to
    resume training). Custom objects must be registered (``keras.saving``) before the call.
    """
    from shared.runs import keras_model_owner, library_noise

    path = check_keras_file(path)
    found = keras_model_owner(path)
    if found is not None and not found.startswith(owner):
        raise ModelFileError(f"{path}: a model of another subproject ({found}), not {what}")
    import keras

    try:
        with library_noise():  # Keras' warnings would bury the one-line refusal (issue 27)
            return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError, AttributeError,
            zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: cannot load the model in safe mode "
                             f"({_first_line(exc)})") from None


# --------------------------------------------------------------------------- precision
# The one precision rule of the Keras subprojects (crater_resunet, ice_patch_cnn): ``fp32`` is
# the ``float32`` policy, ``bf16`` is ``mixed_bfloat16`` (bf16 compute, float32 weights), and
# the layers that produce a model's outputs stay float32 (the sigmoid and the loss in float32).
KERAS_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def keras_device_kind() -> str:
    """``cuda`` when an already imported TensorFlow sees a GPU, else ``cpu``."""
    import sys

    tf = sys.modules.get("tensorflow")
    return "cuda" if tf is not None and tf.config.list_physical_devices("GPU") else "cpu"


def resolve_keras_precision(choice: str | None, key: str = "precision") -> str:
    """``fp32`` or ``bf16`` for ``choice`` (auto, fp32, bf16; None = auto) on this machine
    (``shared.precision``: auto is bf16 where the CPU has native bf16); a bad name is a
    :class:`UserError` naming ``key``."""
    from shared.precision import resolve_precision

    try:
        return resolve_precision(choice, keras_device_kind())
    except ValueError as exc:
        raise UserError(f"{key}: {exc}") from None


def set_keras_precision(choice: str | None, key: str = "precision") -> str:
    """Resolve ``choice`` and set the Keras global dtype policy to it (call before building a
    model); returns ``fp32`` or ``bf16``."""
    import keras

    resolved = resolve_keras_precision(choice, key)
    keras.mixed_precision.set_global_policy(KERAS_POLICIES[resolved])
    return resolved


def model_in_precision(model: Any, choice: str | None) -> Any:
    """``model`` computing in ``choice`` (auto, fp32, bf16): a loaded model keeps the dtype
    policies it was saved with whatever the global policy, so a functional model saved in the
    other precision is rebuilt from its config with every layer in the wanted policy, except
    the layers of its outputs (float32), and given the same weights. Sets the global policy."""
    resolved = set_keras_precision(choice)
    want = KERAS_POLICIES[resolved]
    out_names = {t._keras_history[0].name for t in model.outputs}  # noqa: SLF001
    layers = [layer for layer in model.layers if layer.name not in out_names
              and type(layer).__name__ != "InputLayer"]
    if all(layer.dtype_policy.name == want for layer in layers):
        return model
    config = model.get_config()
    for layer_cfg in config["layers"]:
        if layer_cfg["class_name"] == "InputLayer":
            continue
        name = layer_cfg["config"]["name"]
        layer_cfg["config"]["dtype"] = "float32" if name in out_names else want
    twin = model.__class__.from_config(config)
    twin.set_weights(model.get_weights())
    return twin
