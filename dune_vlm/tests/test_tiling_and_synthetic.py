import json

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from dune_vlm.data.synthetic import REGIONS, make_scene, write_scene
from dune_vlm.prepare_tiles import TilingError, main, prepare_tiles
from dune_vlm.utils.dataset import DuneDataset
from shared.rasters import write_geotiff

CRS_UTM = CRS.from_epsg(32733)
TRANSFORM = from_origin(420000, 7330000, 10, 10)


def scene(tmp_path, bands=64, size=96):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(bands, size, size)).astype(np.float32)
    img[:, :40, :40] = -9999.0  # a nodata corner
    lab = (np.arange(size)[None, :] // 10 % 10).repeat(size, 0).astype(np.uint8)
    write_geotiff(tmp_path / "img.tif", img, crs=CRS_UTM, transform=TRANSFORM, nodata=-9999.0)
    write_geotiff(tmp_path / "lab.tif", lab, crs=CRS_UTM, transform=TRANSFORM)
    return img, lab


def test_synthetic_scene_is_unit_norm_with_nodata_border():
    feat, labels, nodata = make_scene(REGIONS["qaidam"], size=128, seed=1)
    assert feat.shape == (64, 128, 128) and labels.shape == (128, 128)
    valid = ~nodata
    assert np.allclose(np.linalg.norm(feat[:, valid], axis=0), 1, atol=1e-5)
    assert (feat[:, nodata] == -9999.0).all() and (labels[nodata] == 255).all()
    assert nodata[0].all() and valid[64, 64]
    assert len(np.unique(labels[valid])) >= 4  # a mix of classes, not one patch


def test_synthetic_geotiff_has_crs_transform_and_regions_differ(tmp_path):
    img, lab = write_scene(tmp_path, REGIONS["namib"], 64, 0, 0.33)
    with rasterio.open(img) as src:
        assert src.count == 64 and src.crs.to_epsg() == 32733 and src.nodata == -9999.0
        assert src.transform.a == 10.0
    with rasterio.open(lab) as src:
        from dune_vlm.utils.config import class_colors

        assert src.colormap(1)[4][:3] == tuple(class_colors()[4])  # configs/classes.yml
    a = make_scene(REGIONS["namib"], 128, 0)[1]
    b = make_scene(REGIONS["mojave"], 128, 0)[1]
    assert not np.array_equal(a, b)


def test_prepare_tiles_random_split_and_nodata(tmp_path):
    img, lab = scene(tmp_path)
    counts = prepare_tiles(tmp_path / "img.tif", tmp_path / "ds", label_tif=tmp_path / "lab.tif",
                           tile_size=32, region="namib", split="random", val_frac=0.2,
                           test_frac=0.2, seed=1, max_nodata=0.5, progress=False)
    assert counts["skipped"] == 1  # the fully nodata corner tile
    assert counts["train"] + counts["val"] + counts["test"] == 8
    regions = json.loads((tmp_path / "ds/regions.json").read_text())
    assert set(regions.values()) == {"namib"} and len(regions) == 8
    split = next(s for s in ("train", "val", "test") if counts[s])
    ds = DuneDataset(tmp_path / "ds", split)
    x, y, _ = ds[0]
    stem = ds.stems[0]
    r, c = int(stem.split("_")[1]), int(stem.split("_")[2])
    expect = img[:, r:r + 32, c:c + 32].copy()
    bad = (expect == -9999.0).any(0)
    expect[:, bad] = 0
    assert np.array_equal(x, expect)
    want = lab[r:r + 32, c:c + 32].astype(np.int64)
    want[bad] = 255
    assert np.array_equal(y, want)
    assert ds.regions == ["namib"] * len(ds)


def test_prepare_tiles_from_geojson_polygons(tmp_path):
    scene(tmp_path)
    x0, y0 = 420000 + 48 * 10, 7330000 - 48 * 10
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": "linear dunes"},
         "geometry": {"type": "Polygon", "coordinates": [[
             [x0, y0], [x0 + 480, y0], [x0 + 480, y0 - 480], [x0, y0 - 480], [x0, y0]]]}}]}
    (tmp_path / "lab.geojson").write_text(json.dumps(gj))
    counts = prepare_tiles(tmp_path / "img.tif", tmp_path / "ds",
                           label_vector=tmp_path / "lab.geojson", vector_crs="EPSG:32733",
                           tile_size=32, split="test", progress=False)
    assert counts["test"] == 8
    ds = DuneDataset(tmp_path / "ds", "test")
    y = ds[ds.stems.index("img_000064_000064")][1]
    assert (y == 4).all()
    y = ds[ds.stems.index("img_000000_000064")][1]
    assert (y == 255).all()


def test_prepare_tiles_errors(tmp_path, capsys):
    scene(tmp_path, bands=5)
    with pytest.raises(TilingError, match="expected 64 bands, found 5"):
        prepare_tiles(tmp_path / "img.tif", tmp_path / "ds", label_tif=tmp_path / "lab.tif",
                      tile_size=32, progress=False)
    write_geotiff(tmp_path / "lab2.tif", np.zeros((50, 50), np.uint8), crs=CRS_UTM,
                  transform=TRANSFORM)
    write_geotiff(tmp_path / "img64.tif", np.zeros((64, 96, 96), np.float32), crs=CRS_UTM,
                  transform=TRANSFORM)
    with pytest.raises(TilingError, match="not on the image grid"):
        prepare_tiles(tmp_path / "img64.tif", tmp_path / "ds", label_tif=tmp_path / "lab2.tif",
                      tile_size=32, progress=False)
    rc = main(["--image_tif", str(tmp_path / "nope.tif"), "--label_tif", "x.tif",
               "--out_root", str(tmp_path / "ds")])
    assert rc == 2 and "nope.tif: file not found" in capsys.readouterr().err


def test_prepare_tiles_rerun_resumes_or_refuses(tmp_path, capsys):
    scene(tmp_path)
    kw = dict(label_tif=tmp_path / "lab.tif", tile_size=32, region="namib", progress=False)
    first = prepare_tiles(tmp_path / "img.tif", tmp_path / "ds", seed=1, **kw)
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "ds").rglob("*.npy"))
    assert prepare_tiles(tmp_path / "img.tif", tmp_path / "ds", seed=1, **kw) == first
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "ds").rglob("*.npy")) == files
    with pytest.raises(TilingError, match=r"region 'namib' was prepared there with other "
                                          r"settings \(seed: 1 -> 2\)"):
        prepare_tiles(tmp_path / "img.tif", tmp_path / "ds", seed=2, **kw)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "ds").rglob("*.npy")) == files
    rc = main(["--image_tif", str(tmp_path / "img.tif"), "--label_tif", str(tmp_path / "lab.tif"),
               "--out_root", str(tmp_path / "ds"), "--tile_size", "32", "--region", "namib",
               "--seed", "3", "--no_progress"])
    assert rc == 2 and "seed: 1 -> 3" in capsys.readouterr().err
    # audit case D7b: the same image again under another region name would mix splits
    with pytest.raises(TilingError, match=r"img.tif was already prepared there as region "
                                          r"'namib'"):
        prepare_tiles(tmp_path / "img.tif", tmp_path / "ds", seed=2,
                      **{**kw, "region": "other"})
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "ds").rglob("*.npy")) == files


def test_float_label_raster_refused(tmp_path):
    scene(tmp_path)
    write_geotiff(tmp_path / "flab.tif", np.full((96, 96), 2.7, np.float32), crs=CRS_UTM,
                  transform=TRANSFORM)
    with pytest.raises(TilingError, match="flab.tif: label raster has float32 values"):
        prepare_tiles(tmp_path / "img.tif", tmp_path / "ds", label_tif=tmp_path / "flab.tif",
                      tile_size=32, progress=False)
    assert not (tmp_path / "ds" / "img_dir").exists()
