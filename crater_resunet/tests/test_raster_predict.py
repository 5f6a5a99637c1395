"""predict on rasters: any bit depth gives the same craters, georeferenced catalogues agree
with the transform, output GeoTIFFs keep CRS/transform/nodata, the GeoPackage reads back."""

import csv

import keras
import numpy as np
import pytest
import rasterio
from affine import Affine

from crater_resunet import predict
from crater_resunet.predict import run_prediction

MOON = "IAU_2015:30100"
CENTRES = [(40, 50, 6), (120, 90, 9), (200, 200, 5), (60, 230, 7)]  # row, col, radius


def bright_spot_model(tile=64):
    """A fixed 1x1-convolution 'model': probability = sigmoid(20 (grey - 0.5))."""
    inp = keras.Input((tile, tile, 3))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.full((1, 1, 3, 1), 20 / 3, np.float32), np.array([-10.0], np.float32)])
    return model


def scene_u8(h=256, w=288):
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w), 40, np.uint8)
    img[:2] = 0  # both ends of the range present (> 0.1 % each): the percentile stretch
    for r, c, rad in CENTRES:  # of the 16-bit and float copies is ~identity
        img[(yy - r) ** 2 + (xx - c) ** 2 <= rad ** 2] = 255
    return img


def write(path, arr, dtype, nodata=None, crs=MOON, transform=None):
    transform = transform or Affine(0.01, 0, 10.0, 0, -0.01, 5.0)  # degrees on the Moon
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype=dtype, crs=crs, transform=transform, nodata=nodata) as d:
        d.write(arr.astype(dtype)[None])
    return path


def _rows(out):
    with (out / "craters.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def model():
    return bright_spot_model()


def test_bit_depths_give_the_same_craters_and_georeferenced_columns(tmp_path, model):
    u8 = scene_u8()
    files = [write(tmp_path / "a_u8.tif", u8, "uint8"),
             write(tmp_path / "b_u16.tif", u8.astype(np.uint16) * 257, "uint16"),
             write(tmp_path / "c_f32.tif", u8.astype(np.float32) / 255.0, "float32")]
    found = {}
    for f in files:
        out = tmp_path / f.stem
        run_prediction(model, [f], out, overlap=16, min_area=4)
        found[f.stem] = sorted((round(float(r["x"]), 3), round(float(r["y"]), 3),
                                round(float(r["diameter"]), 3)) for r in _rows(out))
    assert len(found["a_u8"]) == len(CENTRES)
    assert found["a_u8"] == found["b_u16"] == found["c_f32"]
    rows = _rows(tmp_path / "a_u8")
    for r in rows:  # lon/lat of the pixel position through the transform (geographic CRS)
        lon = 10.0 + 0.01 * float(r["x"])
        lat = 5.0 - 0.01 * float(r["y"])
        assert abs(float(r["lon"]) - lon) < 1e-6 and abs(float(r["lat"]) - lat) < 1e-6
        km_per_px = np.pi * 1737.4 / 180 * 0.01
        assert float(r["diameter_km"]) == pytest.approx(float(r["diameter"]) * km_per_px,
                                                        rel=1e-3)


def test_geotiffs_keep_crs_transform_nodata_and_gpkg_reads_back(tmp_path, model):
    import pyogrio

    arr = scene_u8().astype(np.uint16) * 257
    arr[:, :20] = 9999  # nodata strip
    f = write(tmp_path / "s.tif", arr, "uint16", nodata=9999)
    out = tmp_path / "out"
    run_prediction(model, [f], out, overlap=16, min_area=4)
    with rasterio.open(f) as src, rasterio.open(out / "masks" / "s_mask.tif") as m, \
            rasterio.open(out / "masks" / "s_prob.tif") as p:
        assert m.crs == src.crs == p.crs and m.transform == src.transform == p.transform
        mask = m.read(1)
        assert m.nodata == 255 and np.all(mask[:, :20] == 255) and set(np.unique(mask)) <= {
            0, 1, 255}
        assert np.all(np.isnan(p.read(1)[:, :20]))
        # what a GIS shows: band descriptions, a colour table, class names
        assert m.descriptions[0].startswith("crater mask") and "probability" in p.descriptions[0]
        cmap = m.colormap(1)
        assert cmap[1][:3] != cmap[0][:3] and cmap[255][3] == 0
        assert m.tags(1)["CLASS_1"] == "crater" and m.tags(1)["CLASS_0"] == "background"
    assert (out / "masks" / "s_mask.qml").is_file()
    assert "crater" in (out / "masks" / "s_mask.tif.aux.xml").read_text()
    rows = _rows(out)
    info = pyogrio.read_info(out / "craters.gpkg", layer="s")
    assert info["features"] == len(rows) == len(CENTRES)
    meta, _, geom, fields = pyogrio.raw.read(out / "craters.gpkg", layer="s")
    assert list(meta["fields"][:3]) == ["image", "x", "y"]
    assert np.allclose(sorted(fields[1]), sorted(float(r["x"]) for r in rows))
    assert rasterio.crs.CRS.from_user_input(meta["crs"]) == rasterio.crs.CRS.from_string(MOON)


def test_streaming_predicts_each_window_once_and_scale_resamples(tmp_path, model):
    f = write(tmp_path / "s.tif", scene_u8(), "uint8")
    out = tmp_path / "o"
    res = run_prediction(model, [f], out, overlap=16, min_area=4)
    from shared.tiles import iter_windows

    n = len(list(iter_windows(256, 288, 64, stride=48)))
    assert res["per_image"][0]["windows"] == n
    half = run_prediction(model, [f], tmp_path / "h", overlap=16, min_area=1, scale=0.5)
    assert half["per_image"][0]["model_grid"] == [128, 144]
    with rasterio.open(tmp_path / "h" / "masks" / "s_mask.tif") as m:
        assert m.transform.a == pytest.approx(0.02) and m.crs.to_string()
    assert len(_rows(tmp_path / "h")) == len(CENTRES)  # x/y in input pixels again
    big = sorted(float(r["x"]) for r in _rows(out))
    small = sorted(float(r["x"]) for r in _rows(tmp_path / "h"))
    assert np.allclose(big, small, atol=2.0)


def test_bad_rasters_are_named(tmp_path, capsys):
    model_path = tmp_path / "m.keras"
    bright_spot_model().save(model_path)
    f = write(tmp_path / "s.tif", scene_u8(), "uint8")
    trunc = tmp_path / "t.tif"
    trunc.write_bytes(f.read_bytes()[:300])
    nan = write(tmp_path / "nan.tif", np.full((64, 64), np.nan, np.float32), "float32")
    for bad, fragment in ((trunc, "t.tif"), (nan, "every pixel is nodata")):
        rc = predict.cli([str(bad), "--model", str(model_path), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2 and fragment in err and "Traceback" not in err, err


def test_default_overlap_is_a_quarter_of_the_model_tile(tmp_path, model):
    """A 64-px model on a GeoTIFF without --overlap: 16-px overlap (not the 256-px model's 64,
    which is no overlap at all for this model); an overlap >= the tile is a user error."""
    from shared.errors import UserError
    from shared.tiles import iter_windows

    f = write(tmp_path / "s.tif", scene_u8(128, 128), "uint8")
    res = run_prediction(model, [f], tmp_path / "o", min_area=4)
    assert res["per_image"][0]["windows"] == len(list(iter_windows(128, 128, 64, stride=48)))
    with pytest.raises(UserError, match="overlap must be in"):
        run_prediction(model, [f], tmp_path / "bad", overlap=64, min_area=4)
