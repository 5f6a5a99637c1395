"""Craters, not pixels: stripes give one crater, the crater NMS, nodata flags, the image
pyramid's recall per size decade (a deterministic stand-in detector, no TensorFlow)."""

import numpy as np
import pytest

from crater_resunet import craters as cr
from crater_resunet.evaluate_catalog import match
from crater_resunet.pyramid import auto_scales, fill_invalid, parse_scales, pyramid_craters


def disc(h, w, x, y, r):
    yy, xx = np.mgrid[:h, :w]
    return (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= r * r


def test_alternating_columns_over_a_disc_give_exactly_one_crater():
    d = disc(100, 120, 60.0, 50.0, 20.0)
    stripes = np.where(np.arange(120) % 2 == 0, 0.9, 0.49)[None, :]
    prob = np.where(d, stripes, 0.02).astype(np.float32)
    assert len(cr.extract_craters(prob, sigma=0, closing=0, nms=False)["x"]) > 10  # the stripes
    t = cr.extract_craters(prob)
    assert len(t["x"]) == 1
    assert t["x"][0] == pytest.approx(60.0, abs=0.6) and t["y"][0] == pytest.approx(50, abs=0.6)
    assert t["diameter"][0] == pytest.approx(40.0, rel=0.05)  # equivalent-circle diameter
    assert 0.6 < t["confidence"][0] < 0.75 and t["peak"][0] == pytest.approx(0.9)
    assert t["nodata"][0] == 0 and t["scale"][0] == 1
    box = cr.crater_boxes(t)[0]  # the circle's bounding square
    assert box == pytest.approx([60 - t["diameter"][0] / 2, 50 - t["diameter"][0] / 2,
                                 60 + t["diameter"][0] / 2, 50 + t["diameter"][0] / 2], abs=0.6)


def test_ring_prediction_becomes_its_disc_and_specks_are_dropped():
    ring = disc(80, 80, 40, 40, 15) & ~disc(80, 80, 40, 40, 11)
    prob = np.where(ring, 0.95, 0.05).astype(np.float32)
    prob[5, 5] = 0.99  # a 1-px speck: smoothed below the threshold
    t = cr.extract_craters(prob, min_area=4)
    assert len(t["x"]) == 1 and t["diameter"][0] == pytest.approx(30, rel=0.1)


def test_crater_nms_merges_the_same_crater_and_keeps_nested_ones():
    t = {k: np.zeros(4) for k in cr.FIELDS}
    t["x"][:] = [50, 51, 50, 200]
    t["y"][:] = [50, 50.5, 50, 200]
    t["diameter"][:] = [20, 22, 80, 20]  # 2 duplicates; a crater 4x larger on the same centre
    t["confidence"][:] = [0.7, 0.9, 0.8, 0.6]
    kept = cr.crater_nms(t)
    assert sorted(kept["diameter"].tolist()) == [20, 22, 80]  # the 22 (conf 0.9) kept, not 20
    assert kept["confidence"].tolist() == [0.9, 0.8, 0.6]


def test_craters_reaching_nodata_are_flagged_or_dropped():
    prob = np.where(disc(60, 60, 30, 30, 8) | disc(60, 60, 10, 45, 6), 0.9, 0.05)
    valid = np.ones((60, 60), bool)
    valid[:, :5] = False  # the second crater's rim (x 4..16) reaches the invalid columns
    t = cr.extract_craters(prob.astype(np.float32), valid)
    flags = dict(zip(np.round(t["x"]).astype(int), t["nodata"]))
    assert flags[30] == 0 and flags[10] == 1 or flags.get(11) == 1
    assert len(cr.extract_craters(prob.astype(np.float32), valid, drop_nodata=True)["x"]) == 1


def test_fill_invalid_uses_the_local_mean_not_zero():
    img = np.full((40, 40, 3), 0.3, np.float32)
    valid = np.ones((40, 40), bool)
    valid[:, :10] = False
    img[~valid] = 0
    out = fill_invalid(img, valid)
    assert np.allclose(out, 0.3, atol=1e-5)


def test_scales_parsing_and_auto():
    assert parse_scales(None) is None and parse_scales("auto") == "auto"
    assert parse_scales("1,0.25,0.5") == [1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="--scales"):
        parse_scales("1,x")
    with pytest.raises(ValueError):
        parse_scales("1,-1")
    assert auto_scales(1100, 900, 64) == [1, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    assert auto_scales(50, 60, (64, 64)) == [1.0]


def multi_size_scene(seed=0, size=1200):
    """Bright discs (0.8) on a dark plain (0.2), not overlapping: up to 24 craters of 5-50 px
    and 10 of 50-500 px in diameter (log-uniform; those that find no room are left out)."""
    rng = np.random.default_rng(seed)
    diams = np.concatenate([np.exp(rng.uniform(np.log(50), np.log(500), 10)),
                            np.exp(rng.uniform(np.log(5), np.log(50), 24))])
    diams[0], diams[-1] = 500.0, 5.0
    placed = []
    for d in diams:
        for _ in range(5000):
            x, y = rng.uniform(d / 2 + 2, size - d / 2 - 2, 2)
            if all(np.hypot(x - a, y - b) > (d + e) / 2 + max(6, 0.1 * (d + e))
                   for a, b, e in placed):
                placed.append((x, y, d))
                break
    img = np.full((size, size), 0.2, np.float32)
    yy, xx = np.mgrid[:size, :size]
    for x, y, d in placed:
        img[(xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= (d / 2) ** 2] = 0.8
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.repeat(img[..., None], 3, axis=2), np.asarray(placed)


def decade_recall(table, truth):
    pred = {"units": "px", "a": table["x"], "b": table["y"], "d": table["diameter"],
            "conf": table["confidence"], "image": None, "path": "pred"}
    true = {"units": "px", "a": truth[:, 0], "b": truth[:, 1], "d": truth[:, 2], "conf": None,
            "image": None, "path": "truth"}
    hit = np.zeros(len(truth), bool)
    hit[[j for _, j, _ in match(pred, true)]] = True
    return {lo: float(hit[(truth[:, 2] >= lo) & (truth[:, 2] < lo * 10 + 1e-9)].mean())
            for lo in (5, 50)}


def test_pyramid_recall_at_every_size_decade(disc_detector):
    """5 to 500 px craters; the stand-in sees 4-20 model px per scale, so only the pyramid
    finds them all; recall >= 0.8 per decade, the single scale misses the large ones."""
    image, truth = multi_size_scene()
    assert (truth[:, 2] < 50).sum() >= 20 and (truth[:, 2] >= 50).sum() >= 8
    assert truth[:, 2].min() == 5 and truth[:, 2].max() == 500
    det = disc_detector(tile=64)
    table = pyramid_craters(image, det, (64, 64), "auto", min_area=4)
    rec = decade_recall(table, truth)
    assert rec[5] >= 0.8 and rec[50] >= 0.8, rec
    assert set(np.unique(table["scale"])) > {1.0}
    single = pyramid_craters(image, det, (64, 64), [1.0], min_area=4)
    assert decade_recall(single, truth)[50] < 0.5
