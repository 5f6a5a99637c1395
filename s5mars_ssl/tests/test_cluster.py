"""S5Mars predict on a Dask LocalCluster (issue 28): the same PNGs as the in-process run, a bad
image recorded while the others finish."""

import numpy as np
import pytest
from PIL import Image

from s5mars_ssl.augseg import trainer
from s5mars_ssl.augseg.utils.config import load_config, validate


@pytest.fixture(autouse=True)
def _no_dashboard(monkeypatch):
    monkeypatch.setenv("PLANETARY_DASK_DASHBOARD", "none")


def test_local_cluster_equals_in_process(tiny_dataset, tmp_path, capsys):
    from s5mars_ssl.predict import main

    cfg = load_config("quick_supervised", {
        "dataset.root": str(tiny_dataset), "dataset.split": "splits/labeled_1_3.txt",
        "dataset.base_size": 80, "dataset.crop_size": 64, "trainer.iterations": 1,
        "trainer.batch_labeled": 2, "trainer.batch_unlabeled": 2, "trainer.eval_every": 0,
        "trainer.save_every": 0, "criterion.ohem.min_kept": 100, "threads": 2})
    validate(cfg)
    trainer.run(cfg, tmp_path / "run", progress=False)
    imgs = sorted((tiny_dataset / "images").glob("*.jpg"))[:2]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")  # a bad image among good ones
    common = [*map(str, imgs), str(bad), "--model", str(tmp_path / "run" / "last.pt"),
              "--no-progress", "--precision", "fp32"]
    assert main([*common, "--out", str(tmp_path / "here")]) == 0
    assert main([*common, "--out", str(tmp_path / "dask"), "--scheduler", "local:2"]) == 0
    assert capsys.readouterr().err.count("bad.png") == 2  # one warning line per run
    for img in imgs:
        for kind in ("mask", "ids"):
            a = np.asarray(Image.open(tmp_path / "here" / f"{img.stem}_{kind}.png"))
            b = np.asarray(Image.open(tmp_path / "dask" / f"{img.stem}_{kind}.png"))
            assert (a != b).mean() < 1e-3  # argmax ties aside, the same classes
