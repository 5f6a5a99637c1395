"""shared.engine's row ring and raw scene reads (the dune mapper's readers, issue 25): windows
from the ring equal windowed reads, every row is decoded once, the ring's size is bounded by
the raster's width, a custom no-data rule, and Scene.read_raw into a buffer."""

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin

from shared.engine import RowRingReader, SceneReader, plan, run
from shared.rasters import RasterError, nodata_mask, open_scene, write_geotiff

NODATA = -128


def scene_file(tmp_path, h=90, w=70, bands=5, name="s.tif"):
    rng = np.random.default_rng(0)
    img = rng.integers(-100, 100, size=(bands, h, w), dtype=np.int8)
    img[:, :7, :9] = NODATA  # every band: not data under both rules
    img[2, 40:43, 30:35] = NODATA  # one band only: not data for the any-band rule
    path = tmp_path / name
    write_geotiff(path, img, crs=CRS.from_epsg(32733), transform=from_origin(0, 0, 10, 10),
                  nodata=NODATA)
    return path, img


def any_band(raw):
    return nodata_mask(raw, NODATA, any_band=True)


@pytest.mark.parametrize("h,w,tile,stride", [(90, 70, 32, 24), (90, 20, 32, 16),
                                             (20, 70, 32, 32)])
def test_ring_windows_equal_window_reads_and_rows_are_read_once(tmp_path, h, w, tile, stride):
    path, _ = scene_file(tmp_path, h, w)
    with open_scene(path) as scene:
        ring = RowRingReader(scene, tile, stride, invalid=any_band)
        direct = SceneReader(scene, uint8=False, invalid=any_band)
        rows = []
        orig = ring._read
        ring._read = lambda row, slot, n: (rows.extend(range(row, min(row + n, h))),
                                           orig(row, slot, n))
        wins = plan(h, w, tile, stride)
        starts = sorted({win.row for win in wins})
        with ring:
            for win in wins:
                if win.col == wins[0].col:
                    i = starts.index(win.row)
                    ring.start_row(win.row, starts[i + 1] if i + 1 < len(starts) else None)
                x, valid = ring(win)
                x2, valid2 = direct(win)
                assert x.shape == x2.shape == (5, tile, tile) and x.dtype == np.int8
                assert np.array_equal(valid, valid2)
                assert np.array_equal(x.astype(np.float32), x2)  # invalid pixels are 0 in both
        assert sorted(rows) == list(range(h))
        assert RowRingReader.nbytes(scene, tile, stride) == 5 * (tile + stride) * max(w, tile)


def test_ring_in_the_engine_equals_window_reads(tmp_path):
    path, img = scene_file(tmp_path, 90, 70)
    outs = []
    with open_scene(path) as scene:
        for reader in (RowRingReader(scene, 32, 24, invalid=any_band),
                       SceneReader(scene, uint8=False, invalid=any_band)):
            from shared.engine import ArrayWriter

            out = ArrayWriter(90, 70)
            stats = run(reader, lambda x: x[:, :2].mean(1, keepdims=True) / 100, 90, 70, 32,
                        [out], stride=24, blend="cosine", batch_size=3, skip_empty=True)
            if hasattr(reader, "close"):
                reader.close()
            outs.append(out)
            assert stats.windows_predicted + stats.windows_skipped == stats.windows
    assert np.array_equal(outs[0].valid, outs[1].valid)
    assert not outs[0].valid[40:43, 30:35].any() and not outs[0].valid[:7, :9].any()
    np.testing.assert_allclose(outs[0].prob, outs[1].prob, equal_nan=True, atol=1e-6)


def test_default_rule_is_the_scenes_and_a_window_row_too_far_is_refused(tmp_path):
    path, _ = scene_file(tmp_path)
    with open_scene(path) as scene, RowRingReader(scene, 32, 16) as ring:
        ring.start_row(0, 16)
        ring.start_row(16, None)
        with pytest.raises(ValueError, match="further apart"):
            ring.start_row(32, 64)
    win = plan(90, 70, 32)[4]
    assert (win.row, win.col) == (32, 32)  # holds rows 40..42, cols 32..34 of the one-band hole
    for rule, hole_valid in ((None, True), (any_band, False)):
        with open_scene(path) as scene, RowRingReader(scene, 32, 32, invalid=rule) as ring:
            ring.start_row(32, None)
            x, valid = ring(win)
            assert valid[8:11, :3].all() == hole_valid  # the scene's rule: every band nodata
            assert valid[11:].all() and (x[:, ~valid] == 0).all()


def test_scene_read_raw_into_a_buffer(tmp_path):
    path, img = scene_file(tmp_path)
    with open_scene(path) as scene:
        buf = np.zeros((2, 10, 70), np.int8)
        got = scene.read_raw(5, 0, 10, 70, bands=[1, 3], out=buf)
        assert got is buf or np.shares_memory(got, buf)
        assert np.array_equal(buf, img[[0, 2], 5:15])
        assert np.array_equal(scene.read_raw(0, 0, 4, 4), img[:, :4, :4])
        with pytest.raises(RasterError, match="outside the raster"):
            scene.read_raw(85, 0, 10, 70, out=np.zeros((5, 10, 70), np.int8))
