"""The same model code under KERAS_BACKEND=torch, in a separate process."""

import os
import subprocess
import sys

CODE = r"""
import sys
import numpy as np
import keras
assert keras.backend.backend() == "torch", keras.backend.backend()
from crater_resunet.model import build_resunet, compile_model
model = compile_model(build_resunet((64, 64, 3), 4), jit_compile=False)
x = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
y = (x[..., :1] > 0.5).astype("float32")
first = model.train_on_batch(x, y, return_dict=True)
second = model.train_on_batch(x, y, return_dict=True)
assert np.isfinite(first["loss"]) and np.isfinite(second["loss"]), (first, second)
assert "tensorflow" not in sys.modules, "tensorflow was imported under the torch backend"
print("OK", model.count_params(), first["loss"], second["loss"])
"""


def test_one_training_step_under_torch():
    env = dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("OK 561077"), out.stdout
