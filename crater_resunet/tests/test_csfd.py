"""CSFD: craterstats pseudo-log / root-2 bins against hand-computed counts, the figure, the
craterstats .diam crater list."""

import numpy as np
import pytest

from crater_resunet import csfd

D = [1.0, 1.05, 1.1, 1.25, 2.0, 2.2, 9.5, 10.0, 15.0]


def test_pseudo_log_bins_against_hand_counts():
    b = csfd.bin_counts(D, "pseudo-log")
    # the 1-9 pattern of two decades, cut one boundary past the largest diameter (15 -> 17)
    assert b["d_min"][0] == 1.0 and b["d_max"][-1] == 17.0 and len(b["n"]) == 24
    n = dict(zip(np.round(b["d_min"], 6), b["n"]))
    assert n[1.0] == 2 and n[1.1] == 1 and n[1.2] == 1 and n[2.0] == 2  # 1.1 -> upper bin
    assert n[9.0] == 1 and n[10.0] == 1 and n[15.0] == 1 and sum(b["n"]) == 9
    pts = csfd.csfd_points(D, area=100.0)
    x, y, e = pts["cumulative"]
    assert x.tolist() == pytest.approx([1.0, 1.1, 1.2, 2.0, 9.0, 10.0, 15.0])
    assert (y * 100).tolist() == pytest.approx([9, 7, 6, 5, 3, 2, 1])
    assert e[0] == pytest.approx(9 / 100 / 3)
    x, r, e = pts["R"]
    assert x[0] == pytest.approx(np.sqrt(1.1))
    assert r[0] == pytest.approx(np.sqrt(1.1) ** 3 * 2 / 0.1 / 100)  # D^3 n / (A dD)
    assert e[0] == pytest.approx(r[0] / np.sqrt(2))


def test_root2_bins_against_hand_counts():
    b = csfd.bin_counts([1.0, 1.3, 1.5, 3.0, 4.1], "root-2")
    assert np.allclose(b["d_min"][:4], [1, 2 ** 0.5, 2, 2 ** 1.5])
    assert b["n"].tolist()[:5] == [2, 1, 0, 1, 1]  # [1,1.41) [1.41,2) [2,2.83) [2.83,4) [4,5.66)


def test_figure_and_craterstats_diam_file(tmp_path):
    cat = tmp_path / "craters.csv"
    cat.write_text("image,x,y,diameter,lon,lat,diameter_km\n"
                   + "".join(f"a,1,1,{d},{10 + i},{-5 + i},{d}\n" for i, d in enumerate(D)))
    png = csfd.write_csfd_figure(cat, tmp_path / "csfd.png", area=100.0, truth_csv=cat)
    assert png.stat().st_size > 10_000
    text = csfd.write_diam_file(cat, tmp_path / "c.diam", 100.0).read_text()
    assert "area = 100" in text and "crater = {diameter, fraction, lon, lat" in text
    assert text.rstrip().endswith("}") and "15 1. 18.000000 3.000000" in text
    empty = tmp_path / "empty.csv"
    empty.write_text("image,x,y,diameter\n")
    assert csfd.write_csfd_figure(empty, tmp_path / "e.png").is_file()
    rc = csfd.cli([str(empty), "--out", str(tmp_path / "x.png"), "--diam", str(tmp_path / "d"),
                   "--area-km2", "5"])
    assert rc == 2  # a pixel catalogue has no km diameters: one clear line, exit 2
