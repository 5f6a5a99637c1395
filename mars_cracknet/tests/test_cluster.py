"""Mars-CrackNet predict on a Dask LocalCluster (issue 28): the same masks and metrics as the
in-process run, a bad image recorded while the others finish."""

import numpy as np
import pytest
import torch
from PIL import Image

from mars_cracknet.checkpoint import save_weights
from mars_cracknet.models import UNet
from mars_cracknet.predict import main


@pytest.fixture(autouse=True)
def _no_dashboard(monkeypatch):
    monkeypatch.setenv("PLANETARY_DASK_DASHBOARD", "none")


def test_local_cluster_equals_in_process(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / "best.safetensors"
    save_weights(ckpt, UNet(1, width=8), "unet")
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(1)
    for i, hw in enumerate([(40, 56), (64, 64), (48, 40)]):
        Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(imgs / f"i{i}.png")
        Image.fromarray((rng.random(hw) > 0.7).astype(np.uint8) * 255).save(masks / f"i{i}.png")
    (imgs / "i9.png").write_bytes(b"not a png")  # a bad image among good ones
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "i9.png")
    common = [str(ckpt), str(imgs), "--masks", str(masks), "--prob", "--tile", "32",
              "--overlap", "8", "--threads", "1", "--precision", "fp32"]
    assert main([*common, "--out", str(tmp_path / "here")]) == 0
    assert main([*common, "--out", str(tmp_path / "dask"), "--scheduler", "local:2"]) == 0
    err = capsys.readouterr().err
    assert err.count("i9.png") == 2  # one warning line per run
    for i in range(3):
        for kind in ("mask", "prob"):
            a = np.asarray(Image.open(tmp_path / "here" / f"i{i}_{kind}.png"))
            b = np.asarray(Image.open(tmp_path / "dask" / f"i{i}_{kind}.png"))
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # uint8 of one probability
    assert (tmp_path / "dask" / "metrics.csv").read_text().splitlines()[0] == \
        (tmp_path / "here" / "metrics.csv").read_text().splitlines()[0]
    assert len((tmp_path / "dask" / "metrics.csv").read_text().splitlines()) == 5
