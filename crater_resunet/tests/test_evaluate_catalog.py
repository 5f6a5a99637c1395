"""The catalogue evaluation (DeepMoon criteria) by hand, in pixels and in km on the Moon."""

import math

import pytest

from crater_resunet.evaluate_catalog import cli, read_catalogue, score


def _csv(path, header, rows):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_pixel_matching_by_hand(tmp_path, capsys):
    truth = _csv(tmp_path / "t.csv", "long,lat,diameter",  # pycda's pixel columns
                 [(100, 100, 20), (200, 200, 10), (300, 300, 40)])
    pred = _csv(tmp_path / "p.csv", "image,x,y,diameter,confidence",
                [("a", 103, 104, 22, 0.9),    # dx^2+dy^2=25, rmin=10: 0.25 < 1.8 -> match
                 ("a", 214, 200, 10, 0.8),    # 196/25 = 7.8: too far
                 ("a", 300, 300, 90, 0.7),    # |45-20|/20 = 1.25: too different
                 ("a", 101, 101, 20, 0.1)])   # would match (100,100) but it is taken
    res = score(read_catalogue(pred), read_catalogue(truth))
    assert res["units"] == "px" and res["matched"] == 1
    assert res["recall"] == pytest.approx(1 / 3) and res["precision"] == pytest.approx(1 / 4)
    assert res["diameter_rel_error_mean"] == pytest.approx(0.1)
    assert res["position_error_mean"] == pytest.approx(5.0)
    assert cli([str(pred), str(truth)]) == 0
    assert "recall 0.3333 precision 0.2500" in capsys.readouterr().out


def test_km_matching_on_the_moon(tmp_path):
    km_per_deg = math.pi * 1737.4 / 180
    truth = _csv(tmp_path / "t.csv", "lon,lat,diameter_km", [(10.0, 0.0, 10.0)])
    near = 4.0 / km_per_deg  # 4 km east: 16/25 < 1.8
    pred = _csv(tmp_path / "p.csv", "lon,lat,diameter_km", [(10.0 + near, 0.0, 10.0)])
    res = score(read_catalogue(pred), read_catalogue(truth))
    assert res["units"] == "km" and res["matched"] == 1
    assert res["position_error_mean"] == pytest.approx(4.0, rel=1e-9)
    far = _csv(tmp_path / "f.csv", "lon,lat,diameter_km", [(10.0 + 7.0 / km_per_deg, 0, 10.0)])
    assert score(read_catalogue(far), read_catalogue(truth))["matched"] == 0  # 49/25 > 1.8


def test_bad_catalogues_are_named(tmp_path, capsys):
    good = _csv(tmp_path / "g.csv", "x,y,diameter", [(1, 1, 2)])
    bad = _csv(tmp_path / "b.csv", "a,b", [(1, 2)])
    assert cli([str(good), str(bad)]) == 2
    assert f"{bad}: expected columns x, y, diameter" in capsys.readouterr().err
    neg = _csv(tmp_path / "n.csv", "x,y,diameter", [(1, 1, -2)])
    assert cli([str(neg), str(good)]) == 2
    assert f"{neg}: every crater" in capsys.readouterr().err
    assert cli([str(tmp_path / "missing.csv"), str(good)]) == 2
