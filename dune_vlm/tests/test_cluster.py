"""dunes-map over several scenes, in-process and on a Dask LocalCluster (issue 28): the same
maps, a bad scene recorded while the others finish, a re-run that skips done scenes."""

import json

import numpy as np
import pytest
import rasterio
import torch


@pytest.fixture(autouse=True)
def _no_dashboard(monkeypatch):
    monkeypatch.setenv("PLANETARY_DASK_DASHBOARD", "none")


def test_many_scenes_in_process_and_on_a_local_cluster(tmp_path, capsys):
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from dune_vlm.inference_tile import main
    from dune_vlm.tests.test_checkpoint import reference_state_dict
    from shared.rasters import write_geotiff

    torch.save(reference_state_dict("dune_vlm_baseline"), tmp_path / "baseline.pth")
    scenes = []
    for i in range(2):
        img = np.random.default_rng(i).normal(size=(64, 40, 48)).astype(np.float32)
        scenes.append(write_geotiff(tmp_path / f"s{i}.tif", img, crs=CRS.from_epsg(32611),
                                    transform=from_origin(5e5, 4e6, 10, 10)))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    common = [*map(str, scenes), str(bad), "--model", str(tmp_path / "baseline.pth"),
              "--tile-size", "32", "--overlap", "16", "--threads", "1", "--no-progress",
              "--precision", "fp32"]
    assert main([*common, "--out", str(tmp_path / "here")]) == 0
    assert main([*common, "--out", str(tmp_path / "dask"), "--scheduler", "local:2"]) == 0
    out = capsys.readouterr()
    assert out.err.count("warning: skipped") == 2 and "bad.tif" in out.err
    assert "2 scene(s) done" in out.out
    for i in range(2):
        with rasterio.open(tmp_path / "here" / f"s{i}_dunes.tif") as a, \
                rasterio.open(tmp_path / "dask" / f"s{i}_dunes.tif") as b:
            assert a.crs == b.crs and a.transform == b.transform
            assert (a.read() != b.read()).mean() < 1e-3  # argmax ties aside, the same map
    summary = json.loads((tmp_path / "dask" / "scenes.json").read_text())
    assert summary["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    # a re-run skips the done scenes (and tries the bad one again)
    assert main([*common, "--out", str(tmp_path / "here")]) == 0
    assert "0 scene(s) done, 2 skipped (done before), 1 failed" in capsys.readouterr().out
