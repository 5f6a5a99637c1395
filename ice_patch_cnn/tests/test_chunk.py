"""The streaming chunker on small synthetic GeoTIFFs."""

import csv
import json

import numpy as np
import pytest

from ice_patch_cnn.chunk import ChunkSpec, chunk_images, despeckle, iter_chunks, main
from shared.images import read_image
from shared.rasters import write_geotiff


def _ramp(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(20, 230, (h, w)).astype(np.uint8)


def test_counts_positions_and_dropped_nodata_chunks(tmp_path):
    img = _ramp(100, 150)
    img[48, 80] = 0            # one no-data pixel in the centre of chunk (1, 2) -> dropped
    img[0:4, 0:4] = 0          # no-data in a corner of chunk (0, 0), outside its centre -> kept
    path = write_geotiff(tmp_path / "ESP_000001_1234_RED.tif", img)
    report = chunk_images([path], tmp_path / "out", ChunkSpec(size=32), progress=False)
    # grid 4 x 5 = 20; row 3 (y 96..127) and col 4 (x 128..159) reach past the edge and their
    # central square holds padding -> dropped; plus chunk (1, 2): 20 - 4 - 5 + 1 - 1 = 11 kept
    assert report["chunks_kept"] == 11
    assert report["chunks_dropped_nodata"] == 9
    with open(tmp_path / "out" / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 11
    got = {(int(r["grid_row"]), int(r["grid_col"])) for r in rows}
    expected = {(r, c) for r in range(3) for c in range(4)} - {(1, 2)}
    assert got == expected
    row = next(r for r in rows if r["grid_row"] == "2" and r["grid_col"] == "1")
    assert row["file"] == "ESP_000001_1234_RED/ESP_000001_1234_RED_r2_c1.png"
    assert (int(row["y"]), int(row["x"])) == (64, 32)
    chunk = read_image(tmp_path / "out" / row["file"])
    np.testing.assert_array_equal(chunk, img[64:96, 32:64])
    corner = read_image(tmp_path / "out" / "ESP_000001_1234_RED" / "ESP_000001_1234_RED_r0_c0.png")
    assert (corner[:4, :4] == 0).all() and corner[4:, 4:].min() >= 1


def test_center_fraction_and_tolerance(tmp_path):
    img = _ramp(64, 64)
    img[2, 2] = 0              # inside the central square only when it covers everything
    path = write_geotiff(tmp_path / "a.tif", img)
    assert sum(c.pixels is not None for c in iter_chunks(path, ChunkSpec(size=32))) == 4
    spec = ChunkSpec(size=32, center_fraction=1.0)
    assert sum(c.pixels is not None for c in iter_chunks(path, spec)) == 3
    spec = ChunkSpec(size=32, center_fraction=1.0, nodata_tolerance=0.01)
    assert sum(c.pixels is not None for c in iter_chunks(path, spec)) == 4


def test_colour_is_converted_to_grayscale(tmp_path):
    rgb = np.stack([_ramp(32, 32, s) for s in (1, 2, 3)])
    path = write_geotiff(tmp_path / "colour.tif", rgb)
    (chunk,) = list(iter_chunks(path, ChunkSpec(size=32)))
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert chunk.pixels.shape == (32, 32) and chunk.pixels.dtype == np.uint8
    assert np.abs(chunk.pixels.astype(float) - luma).max() <= 0.5 + 1e-3


def test_16bit_input_is_stretched_to_8bit(tmp_path):
    img = np.tile(np.arange(1, 1025, dtype=np.uint16) * 4, (16, 1))[:, :1024].reshape(64, 256)
    img[0, 0] = 0   # no-data
    path = write_geotiff(tmp_path / "deep.tif", img, nodata=0)
    chunks = list(iter_chunks(path, ChunkSpec(size=64, center_fraction=0.25,
                                              stretch_percentiles=(0.0, 100.0))))
    pix = np.concatenate([c.pixels for c in chunks], axis=1)
    assert pix.dtype == np.uint8
    assert pix[0, 0] == 0                         # no-data stays 0
    valid = img > 0
    assert pix[valid].min() == 1 and pix[valid].max() == 255
    order = np.argsort(img[valid], kind="stable")
    assert (np.diff(pix[valid][order].astype(int)) >= 0).all()   # monotonic stretch


def test_despeckle_removes_isolated_pixel_and_keeps_bright_patch():
    img = np.full((40, 40), 90, np.uint8)
    img[5, 5] = 255                      # isolated saturated pixel
    img[30, 6:8] = 255                   # a 2-pixel speck
    img[15:23, 20:28] = 255              # bright (ice-like) patch of 64 pixels
    clean, n = despeckle(img, level=255, max_pixels=4)
    assert n == 3
    assert clean[5, 5] == 90 and (clean[30, 6:8] == 90).all()
    assert (clean[15:23, 20:28] == 255).all()
    assert (clean[img != 255] == 90).all()


def test_despeckle_in_the_chunker_across_a_chunk_border(tmp_path):
    img = np.full((64, 64), 100, np.uint8)
    img[31, 31:33] = 255                 # speck straddling four chunks
    img[40:50, 40:50] = 255              # patch
    path = write_geotiff(tmp_path / "s.tif", img)
    spec = ChunkSpec(size=32, center_fraction=0.25, despeckle=True)
    chunks = {(c.grid_row, c.grid_col): c.pixels for c in iter_chunks(path, spec)}
    full = np.block([[chunks[0, 0], chunks[0, 1]], [chunks[1, 0], chunks[1, 1]]])
    assert full[31, 31] == 100 and full[31, 32] == 100
    assert (full[40:50, 40:50] == 255).all()
    plain = {(c.grid_row, c.grid_col): c.pixels for c in iter_chunks(path, ChunkSpec(size=32))}
    assert plain[0, 0][31, 31] == 255


def test_bad_files_are_reported_and_skipped_and_rerun_skips_done(tmp_path, capsys):
    good = write_geotiff(tmp_path / "good.tif", _ramp(64, 64))
    broken = tmp_path / "broken.tif"
    data = (tmp_path / "good.tif").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    out = tmp_path / "out"
    rc = main([str(good), str(broken), str(text), str(tmp_path / "missing.tif"),
               "--out", str(out), "--size", "32", "--quiet"])
    assert rc == 0
    report = json.loads((out / "chunk_report.json").read_text())
    assert report["images_chunked"] == 1 and report["images_failed"] == 3
    assert {f["file"] for f in report["failed"]} == {str(broken), str(text),
                                                     str(tmp_path / "missing.tif")}
    assert "broken.tif" in capsys.readouterr().err
    assert not (out / "broken").exists()
    again = chunk_images([good], out, ChunkSpec(size=32), progress=False)
    assert again["images_skipped_done"] == 1 and again["chunks_in_index"] == 4


def test_cli_errors_are_clean(tmp_path, capsys):
    src = tmp_path / "src"  # the output beside the input: inside it is refused (issue 27)
    src.mkdir()
    with pytest.raises(SystemExit) as exc:
        main([str(src), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main([str(src), "--out", str(tmp_path / "o"), "--size", "2"])
    assert "chunk size" in capsys.readouterr().err


def test_folder_lists_one_file_per_product(tmp_path):
    from ice_patch_cnn.chunk import find_images

    for name in ("ESP_1_RED.JP2", "ESP_1_RED.LBL", "PSP_2.IMG", "PSP_2.LBL", "x.tif",
                 "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    got = sorted(p.name for p in find_images([tmp_path]))
    assert got == ["ESP_1_RED.JP2", "PSP_2.LBL", "x.tif"]


def test_rerun_into_a_used_folder_with_other_settings_is_refused(tmp_path):
    """Audit case I14: a re-run with another chunk size must not keep the old chunks silently."""
    from shared.errors import UserError

    good = write_geotiff(tmp_path / "good.tif", _ramp(64, 64))
    out = tmp_path / "out"
    chunk_images([good], out, ChunkSpec(size=32), progress=False)
    with pytest.raises(UserError, match="already chunked with other settings .*size"):
        chunk_images([good], out, ChunkSpec(size=16), progress=False)
    again = chunk_images([good], out, ChunkSpec(size=16), overwrite=True, progress=False)
    assert again["images_chunked"] == 1 and again["spec"]["size"] == 16


def test_truncated_pngs_are_failures_and_all_damaged_is_exit_2(tmp_path, capsys):
    """Issue 27: truncated PNGs were chunked as empty images with 0 failures and exit 0."""
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    good = src / "good.png"
    Image.fromarray((np.random.default_rng(1).random((96, 96)) * 200 + 40).astype(np.uint8)
                    ).save(good)
    data = good.read_bytes()
    (src / "bad.png").write_bytes(data[: len(data) // 2])
    report = chunk_images([src / "bad.png", good], tmp_path / "out", ChunkSpec(size=32),
                          progress=False)
    assert report["images_failed"] == 1 and report["images_chunked"] == 1
    assert "bad.png" in report["failed"][0]["file"]
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "bad.png").write_bytes(data[: len(data) // 2])
    assert main([str(only_bad), "--out", str(tmp_path / "o2"), "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "every input failed" in err and "truncated" in err
