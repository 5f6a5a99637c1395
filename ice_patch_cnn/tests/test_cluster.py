"""ice predict on a Dask LocalCluster (issue 28): the same chunk probabilities and survey as the
in-process run, a bad image recorded while the others finish (re-runs and killed workers:
tests/test_shared_cluster.py)."""

import csv
import json

import numpy as np
import pytest

from shared.rasters import write_geotiff


@pytest.fixture(autouse=True)
def _no_dashboard(monkeypatch):
    monkeypatch.setenv("PLANETARY_DASK_DASHBOARD", "none")


def _probabilities(folder):
    got = {}
    for path in sorted((folder / "chunks").glob("*.csv")):
        with open(path, newline="") as fh:
            got[path.stem] = [(r["grid_row"], r["grid_col"], float(r["p"]))
                              for r in csv.DictReader(fh)]
    return got


def test_local_cluster_equals_in_process(tmp_path, capsys):
    from ice_patch_cnn.model import build_xception
    from ice_patch_cnn.predict import main
    from ice_patch_cnn.survey import main as survey

    model = tmp_path / "m.keras"
    build_xception((32, 32, 1), width_scale=0.0625).save(model)
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    for i in range(4):
        write_geotiff(images / f"ESP_{i:06d}_0000.tif",
                      rng.integers(30, 200, (64, 96)).astype(np.uint8))
    (images / "ESP_999999_0000.tif").write_bytes(b"not a tiff")  # a bad image among good ones
    common = [str(images), "--model", str(model), "--quiet", "--threads", "1",
              "--config", "quick", "--batch-size", "3", "--precision", "fp32"]
    assert main([*common, "--out", str(tmp_path / "here")]) == 0
    assert main([*common, "--out", str(tmp_path / "dask"), "--scheduler", "local:2"]) == 0
    err = capsys.readouterr().err
    assert "ESP_999999_0000.tif" in err  # reported, one line
    here, dask = _probabilities(tmp_path / "here"), _probabilities(tmp_path / "dask")
    assert sorted(dask) == [f"ESP_{i:06d}_0000" for i in range(4)]
    for name, rows in here.items():
        assert [r[:2] for r in dask[name]] == [r[:2] for r in rows]
        np.testing.assert_allclose([r[2] for r in dask[name]], [r[2] for r in rows], atol=1e-6)
    summary = json.loads((tmp_path / "dask" / "scenes.json").read_text())
    assert summary["counts"] == {"done": 4, "skipped": 0, "failed": 1}
    assert summary["scheduler"] == "local:2"
    # the survey's tables are the same after either run
    for out in ("here", "dask"):
        assert survey([str(tmp_path / out), "--sheet", "4"]) == 0
    for table, key in (("images.csv", "decision"), ("all_chunks.csv", "label")):
        a, b = ([r[key] for r in csv.DictReader(open(tmp_path / out / table, newline=""))]
                for out in ("here", "dask"))
        assert a == b and len(a) >= 4
