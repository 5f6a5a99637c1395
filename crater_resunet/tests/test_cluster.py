"""crater predict on a Dask LocalCluster (issue 28): the same catalogue (CSV and GeoPackage
merged over the scenes) and metrics as the in-process run, a bad raster recorded while the
others finish, a re-run that skips done scenes."""

import json

import numpy as np
import pytest
from affine import Affine

from crater_resunet.tests.test_raster_predict import bright_spot_model, scene_u8, write


@pytest.fixture(autouse=True)
def _no_dashboard(monkeypatch):
    monkeypatch.setenv("PLANETARY_DASK_DASHBOARD", "none")


def test_local_cluster_equals_in_process(tmp_path, capsys):
    import pyogrio
    import pyogrio.raw

    from crater_resunet.predict import cli

    model = tmp_path / "spots.keras"
    bright_spot_model().save(model)
    rasters = tmp_path / "rasters"
    rasters.mkdir()
    for i in range(3):
        write(rasters / f"tile{i}.tif", np.roll(scene_u8(), 17 * i, axis=1), "uint8",
              transform=Affine(0.01, 0, 10.0 + i, 0, -0.01, 5.0))
    (rasters / "broken.tif").write_bytes(b"not a tiff")  # a bad raster among good ones
    common = [str(rasters), "--model", str(model), "--overlap", "16", "--min-area", "4",
              "--max-figures", "0", "--no-progress", "--precision", "fp32"]
    assert cli([*common, "--out", str(tmp_path / "here")]) == 0
    assert cli([*common, "--out", str(tmp_path / "dask"), "--scheduler", "local:2"]) == 0
    assert capsys.readouterr().err.count("warning: skipped") == 2
    here, dask = tmp_path / "here", tmp_path / "dask"
    assert (dask / "craters.csv").read_text() == (here / "craters.csv").read_text()
    assert len((here / "craters.csv").read_text().splitlines()) > 3 * 3  # craters in each
    layers = [name for name, _ in pyogrio.list_layers(here / "craters.gpkg")]
    assert sorted(layers) == ["tile0", "tile1", "tile2"]
    assert [n for n, _ in pyogrio.list_layers(dask / "craters.gpkg")] == layers
    for name in layers:
        a = pyogrio.raw.read(here / "craters.gpkg", layer=name)
        b = pyogrio.raw.read(dask / "craters.gpkg", layer=name)
        assert a[0]["crs"] == b[0]["crs"] and len(a[2]) > 0
        assert list(a[2]) == list(b[2])  # the points, as WKB
        for fa, fb in zip(a[3], b[3]):
            np.testing.assert_array_equal(fa, fb)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (here, dask))
    assert ma["craters_predicted"] == mb["craters_predicted"]
    assert ma["scenes"] == mb["scenes"] == {"done": 3, "skipped": 0, "failed": 1}
    # a re-run skips the done rasters and the catalogue still holds all of them
    assert cli([*common, "--out", str(dask)]) == 0
    assert json.loads((dask / "metrics.json").read_text())["scenes"] == \
        {"done": 0, "skipped": 3, "failed": 1}
    assert (dask / "craters.csv").read_text() == (here / "craters.csv").read_text()
