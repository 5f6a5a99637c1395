"""Lunar evaluation on a tiny generated lon/lat mosaic and catalogue, served from fake wheels
in the cache (no network): Moon GeoTIFF, named-crater CSV, recall in km, no precision."""

import io
import json
import sqlite3
import subprocess
import zipfile

import numpy as np
import pytest
import rasterio

from crater_resunet import lunar

# name, lon, lat, diameter in mosaic pixels (512 x 256 global mosaic: 0.703 deg/px)
CRATERS = [("Alpha", -120.0, 10.0, 8.0), ("Beta", -40.0, -20.0, 14.0), ("Gamma", 0.0, 25.0, 24.0),
           ("Delta", 60.0, 0.0, 40.0), ("Epsilon", 130.0, -30.0, 70.0)]
W, H = 512, 256


def mosaic_jpeg():
    from PIL import Image

    yy, xx = np.mgrid[:H, :W]
    img = np.full((H, W), 50, np.uint8)
    for _, lon, lat, d in CRATERS:
        x, y = (lon + 180) / 360 * W, (90 - lat) / 180 * H
        img[(xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= (d / 2) ** 2] = 200
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def fake_wheels(cache, tmp_path):
    cache.mkdir()
    with zipfile.ZipFile(cache / "lunar_toolkit-0.1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(lunar.MOSAIC_MEMBER, mosaic_jpeg())
    db = tmp_path / "lunar.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE Features(Id INTEGER PRIMARY KEY, Name TEXT, Diameter REAL, "
                "Latitude REAL, Longitude REAL, Delta_Latitude REAL, Delta_Longitude REAL, "
                "Type TEXT)")
    km_per_px = np.pi * 1737.4 * (180 / H) / 180
    for i, (name, lon, lat, d) in enumerate(CRATERS):
        con.execute("INSERT INTO Features VALUES (?,?,?,?,?,0,0,'Crater')",
                    (i + 1, name, d * km_per_px, lat, lon))
    con.execute("INSERT INTO Features VALUES (99,'Mare Test',500,0,0,0,0,'Mare')")
    con.commit()
    con.close()
    with zipfile.ZipFile(cache / "pylunar-0.11.1-py3-none-any.whl", "w") as zf:
        zf.write(db, lunar.DB_MEMBER)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError(f"no download expected: {a}")

    monkeypatch.setattr(subprocess, "run", refuse)


def test_prepare_and_evaluate_lunar_on_a_tiny_mosaic(tmp_path, disc_detector, no_network):
    cache = tmp_path / "cache"
    fake_wheels(cache, tmp_path)
    data = lunar.prepare_lunar(tmp_path / "data", cache)
    assert data["n_craters"] == len(CRATERS)  # the Mare row is not a crater
    with rasterio.open(data["mosaic"]) as src:
        assert src.crs == rasterio.crs.CRS.from_user_input("IAU_2015:30100")
        assert (src.width, src.height) == (W, H)
        assert src.transform.a == pytest.approx(360 / W) and src.transform.c == -180
        assert src.transform.e == pytest.approx(-180 / H) and src.transform.f == 90
    text = data["craters"].read_text()
    assert text.startswith("name,lon,lat,diameter_km\nAlpha,-120.000000,10.000000,")

    res = lunar.evaluate_lunar(disc_detector(tile=64), tmp_path / "eval", data=data,
                               min_area=4)
    assert res["true"] == 5 and res["recall"] == 1.0 and res["matched"] == 5
    assert res["precision"] is None and "precision not measured" in res["precision_note"]
    assert res["scales"] == [1.0, 0.5, 0.25, 0.125]
    assert res["recall_by_diameter"]["100-1000 km"] == {"true": 4, "matched": 4, "recall": 1.0}
    assert res["recall_by_diameter"][">=1000 km"]["true"] == 1
    saved = json.loads((tmp_path / "eval" / "lunar_eval.json").read_text())
    assert saved["recall"] == 1.0
    for name in ("csfd.png", "overlay.png", "predict/craters.csv", "predict/craters.gpkg"):
        assert (tmp_path / "eval" / name).is_file()
    assert "named craters: 5 of 5 matched" in lunar.format_result(res)


def test_lunar_errors_name_the_file(tmp_path, capsys, no_network):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "pylunar-0.11.1-py3-none-any.whl").write_bytes(b"not a zip")
    (cache / "lunar_toolkit-0.1.0-py3-none-any.whl").write_bytes(b"not a zip")
    rc = lunar.cli(["--prepare-only", "--data", str(tmp_path / "d"), "--cache", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2 and "lunar_toolkit-0.1.0-py3-none-any.whl" in err and "Traceback" not in err
