"""A ``--device`` this machine does not have is one line on stderr and exit code 2, never a
traceback (each CLI in its own process: torch and TensorFlow never share one)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from shared.configs import REPO_ROOT as REPO

MISSING = "cuda:99"  # no machine has a hundredth GPU


def cases(tmp: Path) -> dict[str, list[str]]:
    from PIL import Image

    img = tmp / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    model = tmp / "weights.pt"
    model.write_bytes(b"not read: the device is checked first")
    return {
        "cracknet-predict": ["-m", "mars_cracknet.predict", str(img), "--model", str(model),
                             "--out", str(tmp / "o1"), "--device", MISSING],
        "dunes-map": ["-m", "dune_vlm.inference_tile", str(tmp / "scene.tif"), "--out",
                      str(tmp / "map.tif"), "--model", str(model), "--device", MISSING],
        "dunes-evaluate": ["-m", "dune_vlm.inference", "--data", str(tmp), "--model", str(model),
                           "--device", MISSING],
        "s5mars-predict": ["-m", "s5mars_ssl.predict", str(img), "--model", str(model), "--out",
                           str(tmp / "o2"), "--device", MISSING],
        "s5mars-evaluate": ["-m", "s5mars_ssl.evaluate", "--model", str(model), "--device",
                            MISSING],
    }


def run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true", "CUDA_VISIBLE_DEVICES": os.environ.get(
        "CUDA_VISIBLE_DEVICES", "")}
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)


def test_missing_device_is_one_line_exit_2(tmp_path):
    table = cases(tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(table, pool.map(run, table.values())))
    bad = []
    for name, out in results.items():
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        if out.returncode != 2 or len(lines) != 1 or "--device" not in lines[0] \
                or "Traceback" in out.stderr:
            bad.append(f"{name}: exit {out.returncode}, stderr {out.stderr[-400:]!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_keras_missing_gpu_is_one_line_exit_2(tmp_path):
    """ice-predict --device gpu where TensorFlow sees no GPU (imports TensorFlow: slow)."""
    out = run(["-m", "ice_patch_cnn.predict", str(tmp_path), "--model", str(tmp_path / "m.keras"),
               "--out", str(tmp_path / "o"), "--device", "gpu"])
    if out.returncode == 0:
        pytest.skip("this machine has a GPU")
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "--device gpu" in lines[0], out.stderr
