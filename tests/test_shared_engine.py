"""shared.engine: the blend weights (the old Mars-CrackNet and dune rules reproduced), the
blended result, streaming to writers, bounded memory, GeoTIFF output (issue 25)."""

import tracemalloc

import numpy as np
import pytest
import rasterio
from affine import Affine

from shared import engine
from shared.engine import (
    BLENDS,
    ArrayWriter,
    Blend,
    GeoTIFFWriter,
    blend_weight,
    predict_array,
    side_profile,
)


# ---------------------------------------------------------------- the old rules, as they were
def old_mars_window(size, floor=0.05):
    """mars_cracknet/inference.py blend_window before issue 25."""
    ramp = np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5) / (size / 2)
    w1 = np.clip(ramp * 2, floor, 1.0)
    return np.outer(w1, w1).astype(np.float32)


def old_dune_side(n, margin, ramp, taper_start, taper_end):
    """dune_vlm/inference_tile.py side_weight before issue 25."""
    d = np.arange(n, dtype=np.float64)
    w = np.ones(n)

    def ramp_fn(dist):
        t = np.clip((dist - margin + 0.5) / max(ramp, 1), 0.0, 1.0)
        return np.where(dist < margin, 0.0, np.sin(0.5 * np.pi * t) ** 2)

    if taper_start:
        w = np.minimum(w, ramp_fn(d))
    if taper_end:
        w = np.minimum(w, ramp_fn(n - 1 - d))
    return w


@pytest.mark.parametrize("size", [32, 64, 512])
def test_linear_is_the_mars_cracknet_ramp(size):
    np.testing.assert_array_equal(blend_weight("linear", size, 64), old_mars_window(size))
    assert blend_weight("linear", size, 64).min() >= 0.05 ** 2 - 1e-9


@pytest.mark.parametrize("tile,overlap", [(512, 256), (64, 32), (96, 40), (32, 0)])
@pytest.mark.parametrize("ts,te", [(True, True), (False, True), (True, False), (False, False)])
def test_cosine_is_the_dune_rule(tile, overlap, ts, te):
    margin = overlap // 4
    old = old_dune_side(tile, margin, max(overlap - 2 * margin, 1), ts, te)
    np.testing.assert_array_equal(side_profile("cosine", tile, overlap, ts, te), old)
    w2 = blend_weight("cosine", tile, overlap, (ts, te, te, ts))
    np.testing.assert_array_equal(
        w2, np.outer(old, old_dune_side(tile, margin, max(overlap - 2 * margin, 1), te, ts))
        .astype(np.float32))


def test_constant_and_gaussian():
    np.testing.assert_array_equal(blend_weight("constant", (8, 12), 2), np.ones((8, 12)))
    g = blend_weight("gaussian", 64, 16)
    assert g.shape == (64, 64) and g.max() == g[31, 32] > 0.99  # pixel centres
    np.testing.assert_allclose(g, g[::-1, ::-1])  # symmetric
    assert g.min() > 0 and g[0, 0] < g[16, 16] < g[32, 32]  # falls towards the sides
    # an untapered side (the raster border) keeps full weight in the middle rows
    side = side_profile("gaussian", 64, 16, taper_start=False)
    assert side[0] == 1.0 and side[-1] < 0.01


def test_unknown_blend_is_refused():
    with pytest.raises(ValueError, match="blend must be one of"):
        Blend("median")


# ---------------------------------------------------------------- the blended result
def _pointwise(x):
    return x[:, 0] * 0.5


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("edge", ["shift", "pad"])
@pytest.mark.parametrize("hw", [(100, 130), (64, 64), (257, 95), (20, 30)])
def test_a_pointwise_model_gives_its_untiled_result(blend, edge, hw):
    """Weights cancel where every window agrees: any blend, any edge, any size."""
    img = np.random.default_rng(0).random((2, *hw), dtype=np.float32)
    got = predict_array(img, _pointwise, 32, stride=24, edge=edge, blend=blend, batch_size=3)
    assert got.shape == (1, *hw)
    np.testing.assert_allclose(got[0], img[0] * 0.5, atol=1e-6)


def test_constant_blend_is_the_plain_average_of_the_windows():
    """A model whose output depends on the window (its column offset): the constant blend is
    the mean over the windows that cover each pixel."""
    h, w, t, s = 40, 70, 32, 16
    img = np.zeros((1, h, w), np.float32)
    img[0] = np.arange(w)[None]

    def first_column(x):  # each window predicts its own first column value everywhere
        return np.broadcast_to(x[:, 0, :1, :1], (x.shape[0], t, t)).copy()

    got = predict_array(img, first_column, t, stride=s, edge="shift")[0]
    wins = engine.plan(h, w, t, s, "shift")
    acc, cnt = np.zeros((h, w)), np.zeros((h, w))
    for win in wins:
        acc[win.slices] += win.col
        cnt[win.slices] += 1
    np.testing.assert_allclose(got, acc / cnt, rtol=1e-6)


def test_invalid_pixels_get_no_weight_and_windows_without_data_are_skipped():
    h, w = 64, 96
    img = np.ones((1, h, w), np.float32)
    valid = np.ones((h, w), bool)
    valid[:, :40] = False  # the first window column is all nodata
    calls = []

    def model(x):
        calls.append(len(x))
        return x[:, 0]

    reader = engine.ArrayReader(img, valid)
    out = ArrayWriter(h, w)
    stats = engine.run(reader, model, h, w, 32, [out], skip_empty=True, progress=False)
    assert stats.windows == 6 and stats.windows_skipped == 2 and stats.windows_predicted == 4
    assert np.isnan(out.prob[0, :, :40]).all() and not out.valid[:, :40].any()
    np.testing.assert_array_equal(out.prob[0, :, 40:], 1.0)


def test_rows_reach_writers_in_order_once_each_and_classes_are_kept():
    seen = []

    class Rows:
        def write(self, row0, prob, valid):
            seen.append((row0, prob.shape))

    img = np.zeros((3, 100, 50), np.float32)
    stats = engine.run(engine.ArrayReader(img), lambda x: np.zeros((len(x), 4, 32, 32)),
                       100, 50, 32, [Rows()], stride=20, progress=False)
    assert stats.classes == 4
    rows = [r for r, _ in seen]
    assert rows[0] == 0 and rows == sorted(rows)
    assert sum(s[1] for _, s in seen) == 100 and all(s[0] == 4 and s[2] == 50 for _, s in seen)


def test_memory_is_bounded_by_the_strip_not_the_raster():
    """A 64-px wide, 20,000-row raster (and one of 2,000 rows): the peak traced memory is
    the same, a few strips, never the 5 MB of a full float32 map."""
    t = 64

    def peak(height):
        class Discard:
            def write(self, row0, prob, valid):
                pass

        def read(win):
            return np.zeros((3, t, t), np.float32), None

        tracemalloc.start()
        engine.run(read, lambda x: x[:, 0], height, 64, t, [Discard()], stride=48,
                   blend="cosine", progress=False)
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p

    peak(100)  # first-call imports and caches
    small, big = peak(2_000), peak(20_000)
    # one batch of 8 windows (393 kB), the strip (33 kB), the grid's start lists (O(height)
    # ints): far from the 5.1 MB of a 20,000 x 64 float32 map
    assert big < 900_000
    assert big - small < 60_000  # 18,000 more rows cost only their grid start offsets


def test_wide_raster_holds_one_strip():
    """20,000 px wide, 64 rows: memory is one window-high strip of the width (5 MB of
    float32 per class), not more."""
    def read(win):
        return np.zeros((1, 64, 64), np.float32), None

    class Discard:
        def write(self, row0, prob, valid):
            pass

    tracemalloc.start()
    engine.run(read, lambda x: x[:, 0], 64, 20_000, 64, [Discard()], stride=48,
               progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    strip = 64 * 20_000 * 4
    assert peak < 4 * strip


# ---------------------------------------------------------------- GeoTIFF writer
def test_geotiff_writer_keeps_crs_transform_nodata(tmp_path):
    h, w = 70, 90
    img = np.random.default_rng(1).random((1, h, w), dtype=np.float32)
    valid = np.ones((h, w), bool)
    valid[10:20, 5:15] = False
    transform = Affine(0.25, 0, 500000.0, 0, -0.25, 4100000.0)
    path = tmp_path / "p.tif"
    with GeoTIFFWriter(path, width=w, height=h, crs="EPSG:32610", transform=transform) as dst:
        engine.run(engine.ArrayReader(img, valid), lambda x: x[:, 0], h, w, 32, [dst],
                   stride=24, blend="linear", progress=False)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32610 and src.transform == transform
        assert np.isnan(src.nodata)
        got = src.read(1)
    assert np.isnan(got[10:20, 5:15]).all()
    np.testing.assert_allclose(got[valid], img[0][valid], atol=1e-6)


def test_geotiff_writer_is_atomic(tmp_path):
    path = tmp_path / "p.tif"

    def boom(x):
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError):
        with GeoTIFFWriter(path, width=40, height=40) as dst:
            engine.run(engine.ArrayReader(np.zeros((1, 40, 40))), boom, 40, 40, 32, [dst],
                       progress=False)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_a_reader_is_told_when_each_window_row_starts():
    calls = []

    class Rows(engine.ArrayReader):
        def start_row(self, row, next_row):
            calls.append((row, next_row))

    engine.run(Rows(np.zeros((1, 90, 40))), lambda x: x[:, 0], 90, 40, 32, [ArrayWriter(90, 40)],
               stride=24, progress=False)
    assert calls == [(0, 24), (24, 48), (48, 58), (58, None)]


def test_scene_reader_reads_through_the_scene_stretch_and_marks_outside_invalid(tmp_path):
    """Windows of a 16-bit raster with nodata through SceneReader: the scene's one stretch
    (read_uint8) in uint8 mode, raw values with invalid pixels filled in raw mode; a window
    reaching past the edge is invalid there."""
    from shared.rasters import open_scene, write_geotiff

    rng = np.random.default_rng(3)
    arr = rng.integers(100, 4000, (50, 70)).astype(np.uint16)
    arr[5:15, 20:30] = 0
    path = write_geotiff(tmp_path / "s.tif", arr, crs="EPSG:32610", nodata=0,
                         transform=Affine(1, 0, 0, 0, -1, 50))
    with open_scene(path) as scene:
        whole, whole_valid = scene.read_uint8(0, 0, 50, 70)
        out = ArrayWriter(50, 70)
        engine.run(engine.SceneReader(scene), lambda x: x[:, 0], 50, 70, 32, [out],
                   stride=24, edge="pad", progress=False)
        np.testing.assert_array_equal(out.valid, whole_valid)
        np.testing.assert_allclose(out.prob[0][whole_valid], whole[0][whole_valid])
        last = engine.plan(50, 70, 32, 24, "pad")[-1]
        x, valid = engine.SceneReader(scene, uint8=False, fill=-1)(last)
        vh, vw = last.valid_height, last.valid_width
        assert (vh, vw) == (26, 22) and x.shape == (1, 32, 32)
        assert not valid[vh:].any() and not valid[:, vw:].any() and valid[:vh, :vw].all()
        assert (x[0][~valid] == -1).all()
        np.testing.assert_array_equal(x[0, :vh, :vw], arr[24:, 48:])
