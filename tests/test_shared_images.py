import numpy as np
import pytest
from PIL import Image

from shared.images import ImageReadError, read_image, read_mask


def _png(path, arr):
    Image.fromarray(arr).save(path)
    return path


def test_reads_png_rgb_and_gray(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (8, 9, 3), dtype=np.uint8)
    p = _png(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(read_image(p), rgb)
    gray = read_image(p, mode="L")
    assert gray.shape == (8, 9) and gray.dtype == np.uint8
    g = _png(tmp_path / "g.png", rgb[..., 0])
    assert read_image(g, mode="RGB").shape == (8, 9, 3)


@pytest.mark.parametrize("ext", ["jpg", "pgm", "tif"])
def test_reads_other_formats(tmp_path, ext):
    arr = np.full((16, 16), 77, dtype=np.uint8)
    p = tmp_path / f"x.{ext}"
    Image.fromarray(arr).save(p)
    out = read_image(p)
    assert out.shape == (16, 16)
    assert abs(int(out.mean()) - 77) <= 2


def test_reads_multiband_float_tiff_with_rasterio(tmp_path):
    from shared.rasters import write_geotiff

    arr = np.random.default_rng(1).random((5, 6, 7)).astype("float32")
    p = write_geotiff(tmp_path / "m.tif", arr)
    out = read_image(p)
    assert out.shape == (6, 7, 5)
    np.testing.assert_allclose(out, np.moveaxis(arr, 0, -1))


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png: file not found"):
        read_image(tmp_path / "nope.png")


def test_truncated_png_names_it(tmp_path):
    p = _png(tmp_path / "t.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                                     dtype=np.uint8))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"t\.png: truncated"):
        read_image(p)


def test_not_an_image(tmp_path):
    p = tmp_path / "text.png"
    p.write_text("hello, not a picture")
    with pytest.raises(ImageReadError, match="text.png"):
        read_image(p)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(empty)


def test_read_mask_values_and_channels(tmp_path):
    m = np.zeros((5, 5), np.uint8)
    m[1:3] = 255
    p = _png(tmp_path / "m.png", m)
    np.testing.assert_array_equal(read_mask(p, allowed=(0, 255)), m)
    rgb = _png(tmp_path / "rgbmask.png", np.repeat(m[..., None], 3, -1))
    np.testing.assert_array_equal(read_mask(rgb), m)
    m[0, 0] = 7
    bad = _png(tmp_path / "bad.png", m)
    with pytest.raises(ImageReadError, match=r"bad\.png: unexpected label values 7"):
        read_mask(bad, allowed=(0, 255))
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 9
    c = _png(tmp_path / "colour.png", colour)
    with pytest.raises(ImageReadError, match="single-channel"):
        read_mask(c)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_too_large_image_is_a_named_error(tmp_path, monkeypatch, ext):
    p = tmp_path / f"big.{ext}"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # the guard trips above 1000 px
    with pytest.raises(ImageReadError, match=rf"big.{ext}: 50 x 40 px is too large to read "
                                             r"whole .*open_scene"):
        read_image(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert read_image(p).shape == (40, 50)
