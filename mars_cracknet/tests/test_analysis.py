import json

import numpy as np
import pytest
from PIL import Image

from mars_cracknet.analysis import (
    analyze_mask,
    box_counting_dimension,
    honeycomb_mask,
    main,
    prune_spurs,
    square_grid_mask,
)


@pytest.fixture(scope="module")
def grid():
    return analyze_mask(square_grid_mask(size=192, spacing=40, width=5))


@pytest.fixture(scope="module")
def honey():
    return analyze_mask(honeycomb_mask(size=192, side=24, width=4))


def test_square_grid_angles_are_90(grid):
    a = np.asarray(grid["intersection_angles"])
    assert a.size >= 4 * 16
    assert abs(a.mean() - 90) <= 3
    assert np.median(np.abs(a - 90)) <= 3  # each angle, not just the mean
    assert grid["n_junctions"] == 25  # 5 x 5 crossings at offsets 17, 57, 97, 137, 177


def test_honeycomb_angles_are_120(honey):
    a = np.asarray(honey["intersection_angles"])
    assert a.size >= 3 * 20
    assert abs(a.mean() - 120) <= 3
    assert np.median(np.abs(a - 120)) <= 3


def test_measures_present_and_consistent(grid):
    for key in ("surface_crack_ratio", "intersection_angles", "segmentation_ratios",
                "segment_lengths", "mean_width", "n_junctions", "n_segments", "n_clods",
                "clod_areas", "fractal_dimension"):
        assert key in grid
    assert 4 <= grid["mean_width"] <= 6  # drawn 5 px wide
    assert grid["n_clods"] == 36  # 6 x 6 cells (those cut by the border included)
    assert grid["n_segments"] == len(grid["segment_lengths"])
    assert 0 < grid["surface_crack_ratio"] < 0.5
    assert 1.0 < grid["fractal_dimension"] < 2.0


def test_t_junction_segmentation_ratio():
    mask = np.zeros((160, 160), np.uint8)
    mask[80:84, 10:150] = 255  # through-going crack
    mask[10:82, 48:52] = 255  # abutting crack meets it 40 px from the left end
    r = analyze_mask(mask)
    assert r["n_junctions"] == 1
    assert len(r["segmentation_ratios"]) == 1
    # the parts of the through-going crack are about 40 and 100 px long
    assert r["segmentation_ratios"][0] == pytest.approx(40 / 100, abs=0.06)
    assert sorted(round(a) for a in r["intersection_angles"]) == pytest.approx([90, 90, 180],
                                                                              abs=3)


def test_spurs_are_pruned():
    mask = np.zeros((100, 100), np.uint8)
    mask[48:56, 5:95] = 255  # an 8-px-wide crack
    mask[44:48, 60:62] = 255  # a 4-px bump: not a branch
    r = analyze_mask(mask)
    assert r["n_junctions"] == 0 and r["n_segments"] == 1


def test_pruning_continues_on_the_graph():
    """A side branch ending in a small fork: the fork's arms go in the first round, which
    leaves the branch itself a spur for the second; the main crack is kept whole."""
    skel = np.zeros((60, 100), bool)
    skel[50, 10:91] = True  # the main crack
    skel[44:50, 50] = True  # a 6-px side branch
    for k in (1, 2):  # its fork: two 2-px diagonal arms
        skel[44 - k, 50 - k] = skel[44 - k, 50 + k] = True
    dist = np.full(skel.shape, 5.0)  # local width 2 * 5 - 1 = 9 px everywhere
    out = prune_spurs(skel, dist)
    assert out[:49].sum() == 0  # branch and fork gone
    assert out[50, 10:91].all() and out.sum() == 81
    one_round = prune_spurs(skel, dist, max_rounds=1)  # only the fork's arms
    assert one_round[44:50, 50].all() and one_round[:44].sum() == 0


def test_box_counting():
    full = np.ones((256, 256), bool)
    line = np.zeros((256, 256), bool)
    line[128] = True
    assert box_counting_dimension(full) == pytest.approx(2.0, abs=0.02)
    assert box_counting_dimension(line) == pytest.approx(1.0, abs=0.02)


def test_empty_mask():
    r = analyze_mask(np.zeros((32, 32), np.uint8))
    assert r["surface_crack_ratio"] == 0 and r["intersection_angles"] == []


def test_cli_compare(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    Image.fromarray(square_grid_mask(128, 32, 4)).save(a / "g.png")
    Image.fromarray(honeycomb_mask(128, 20, 3)).save(b / "h.png")
    assert main(["--compare", str(a), str(b), "--labels", "grid", "honey",
                 "--out", str(tmp_path / "out")]) == 0
    ks = json.loads((tmp_path / "out" / "ks.json").read_text())
    angles = next(r for r in ks["rows"] if r["measure"] == "intersection_angles")
    assert angles["ks_statistic"] > 0.5 and angles["p_value"] < 1e-3
    for name in ("compare.pdf", "ks.csv", "a/summary.json", "a/images.csv", "a/pdfs.pdf",
                 "a/per_image/g.csv", "b/per_image/h.csv"):
        assert (tmp_path / "out" / name).is_file(), name
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
