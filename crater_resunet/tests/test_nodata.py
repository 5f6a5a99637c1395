"""Nodata: filled with the local mean before the forward (not 0), craters whose rim reaches
nodata flagged; the same scene with and without a nodata collar gives the same craters
inside the valid area."""

import csv

import numpy as np
import rasterio
from affine import Affine

from crater_resunet.predict import run_prediction

MOON = "IAU_2015:30100"
DISCS = [(40, 60, 6), (120, 90, 9), (200, 200, 5), (60, 230, 7), (150, 30, 8)]  # row, col, r


class ContrastModel:
    """A stand-in model with spatial support (Keras-like ``input_shape``/``predict``): bright
    pixels (grey > 0.5), and pixels brighter than their 15x15 neighbourhood (a real model's
    response to an edge), are craters. A 0-filled nodata collar makes its valid edge
    'brighter than the neighbourhood': craters along the collar, as the issue reports."""

    input_shape = (None, 64, 64, 3)

    def predict(self, x, verbose=0):
        from scipy.ndimage import uniform_filter

        g = np.asarray(x, np.float32).mean(-1)
        local = uniform_filter(g, size=(1, 15, 15), mode="reflect")
        bright = 1 / (1 + np.exp(-20 * (g - 0.5)))
        edge = 1 / (1 + np.exp(-(100 * (g - local) - 6)))
        return np.maximum(bright, edge)[..., None]


def scene():
    yy, xx = np.mgrid[:256, :288]
    img = np.full((256, 288), 40, np.uint8)
    for r, c, rad in DISCS:
        img[(yy - r) ** 2 + (xx - c) ** 2 <= rad ** 2] = 255
    return img


def write(path, arr, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype="uint8", crs=MOON, nodata=nodata,
                       transform=Affine(0.01, 0, 10.0, 0, -0.01, 5.0)) as d:
        d.write(arr[None])
    return path


def rows(out):
    with (out / "craters.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_collar_gives_the_same_craters_inside_the_valid_area(tmp_path, monkeypatch):
    img = scene()
    collar = np.zeros(img.shape, bool)
    collar[:, :30] = True          # a straight collar on the left
    yy, xx = np.mgrid[:256, :288]
    collar |= yy > 240 - xx // 8   # and a slanted one at the bottom
    with_collar = img.copy()
    with_collar[collar] = 0
    a = write(tmp_path / "full.tif", img)
    b = write(tmp_path / "collar.tif", with_collar, nodata=0)
    model = ContrastModel()
    run_prediction(model, [a], tmp_path / "a", overlap=16, min_area=4)
    run_prediction(model, [b], tmp_path / "b", overlap=16, min_area=4)

    def inside(r):  # the crater's circle (+2 px) lies in the valid area of the collar scene
        x, y, d = float(r["x"]), float(r["y"]), float(r["diameter"])
        m = (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= (d / 2 + 2) ** 2
        return not (m & collar).any() and m.sum() > 0

    ra = [r for r in rows(tmp_path / "a") if inside(r)]
    rb = rows(tmp_path / "b")
    clean_b = [r for r in rb if r["nodata"] == "0"]
    key = lambda r: (round(float(r["x"]), 2), round(float(r["y"]), 2),  # noqa: E731
                     round(float(r["diameter"]), 2))
    assert len(ra) == 4
    assert sorted(map(key, ra)) == sorted(map(key, clean_b))
    flagged = [r for r in rb if r["nodata"] == "1"]  # the disc cut by the collar at col 22..38
    assert len(flagged) == 1 and abs(float(flagged[0]["y"]) - 150) < 3

    # the old behaviour (nodata fed as 0) puts craters along the collar edge
    import crater_resunet.pyramid as pyr

    monkeypatch.setattr(pyr, "fill_invalid", lambda x, valid, **kw: x)
    run_prediction(model, [b], tmp_path / "zero", overlap=16, min_area=4)
    assert len(rows(tmp_path / "zero")) > len(rb)
