"""shared.rasters.open_scene: any raster, any bit depth, windowed reads, one stretch per image."""

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from shared.rasters import (
    RasterError,
    body_radius_m,
    geographic_crs,
    nodata_mask,
    open_scene,
    to_gray,
    to_uint8,
    write_geotiff,
)

MOON = CRS.from_string("IAU_2015:30100")  # Moon sphere, geographic (degrees)
MOON_EQC = CRS.from_string("IAU_2015:30110")  # Moon sphere, equirectangular (metres)
R_MOON = 1737400.0


def _scene_values(h=96, w=128, seed=0):
    """A smooth scene in 0..1 with some texture (same content at every bit depth)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(xx / 9.0) * np.cos(yy / 7.0) + 0.1 * rng.random((h, w))
    return np.clip(base, 0.0, 1.0)


def test_same_scene_at_three_bit_depths_gives_same_uint8(tmp_path):
    v = _scene_values()
    lo8, hi8 = 10, 250
    as8 = np.rint(lo8 + v * (hi8 - lo8)).astype(np.uint8)
    t = from_origin(0, 0, 1, 1)
    p8 = write_geotiff(tmp_path / "u8.tif", as8[None], crs=MOON_EQC, transform=t)
    # uint16 and float32 hold the same values on another scale/offset
    p16 = write_geotiff(tmp_path / "u16.tif", (as8.astype(np.uint16) * 200 + 1000)[None],
                        crs=MOON_EQC, transform=t)
    pf = write_geotiff(tmp_path / "f32.tif", (as8.astype(np.float32) / 255.0 - 3.0)[None],
                       crs=MOON_EQC, transform=t)
    outs = {}
    for name, p in (("u8", p8), ("u16", p16), ("f32", pf)):
        with open_scene(p, percentiles=(0.0, 100.0)) as s:
            data, valid = s.read_uint8(0, 0, s.height, s.width)
            assert data.dtype == np.uint8 and data.shape == (1, 96, 128) and valid.all()
            outs[name] = data[0].astype(int)
            if name == "u8":
                assert s.stretch is None
                np.testing.assert_array_equal(data[0], as8)  # identity for 8 bits
            else:
                assert s.stretch is not None
    # stretched versions map min..max to 1..255: the same as a linear rescale of the 8-bit one
    expected = np.rint((as8.astype(float) - as8.min()) * 254.0 / (as8.max() - as8.min()) + 1)
    for name in ("u16", "f32"):
        assert np.abs(outs[name] - expected).max() <= 1, name
    assert np.abs(outs["u16"] - outs["f32"]).max() <= 1


def test_nodata_nan_and_outside_are_invalid(tmp_path):
    arr = np.full((2, 20, 30), 5.0, dtype=np.float32)
    arr[:, 0, 0] = -9999.0  # nodata in every band
    arr[0, 1, 1] = -9999.0  # nodata in one band only: a real value
    arr[1, 2, 2] = np.nan  # NaN in any band
    arr[0, 3, 3] = np.inf
    p = write_geotiff(tmp_path / "nd.tif", arr, crs=MOON_EQC, transform=from_origin(0, 0, 1, 1),
                      nodata=-9999.0)
    with open_scene(p) as s:
        data, valid = s.read(-2, -3, 10, 10)
        assert data.dtype == np.float32 and data.shape == (2, 10, 10)
        assert not valid[:2].any() and not valid[:, :3].any()  # outside the raster
        inner = valid[2:, 3:]
        assert not inner[0, 0] and inner[1, 1] and not inner[2, 2] and not inner[3, 3]
        assert inner[4:, 4:].all()
        np.testing.assert_array_equal(data[:, 2:, 3:][:, 4:, 4:], 5.0)
        u8, v8 = s.read_uint8(-2, -3, 10, 10, gray=True)
        assert u8.shape == (1, 10, 10)
        np.testing.assert_array_equal(v8, valid)
        assert (u8[0][~valid] == 0).all() and (u8[0][valid] >= 1).all()
        with pytest.raises(RasterError, match="outside the raster"):
            s.read(15, 25, 10, 10, boundless=False)
        with pytest.raises(RasterError, match="out of range"):
            s.read(0, 0, 2, 2, bands=[3])
        assert not s.all_invalid()


def test_default_nodata_and_all_invalid(tmp_path):
    arr = np.zeros((1, 16, 16), dtype=np.uint8)
    arr[0, 5, 5] = 0
    arr[0, 8:, 8:] = 7
    p = write_geotiff(tmp_path / "z.tif", arr)
    with open_scene(p) as s:  # no declared nodata: 0 is a value (kept as 1 in uint8)
        assert s.nodata is None and s.read(0, 0, 16, 16)[1].all()
        assert (s.read_uint8(0, 0, 16, 16)[0][0, :8, :8] == 1).all()
    with open_scene(p, default_nodata=0) as s:  # the ice chunker's HiRISE rule
        assert s.nodata == 0 and s.file_nodata is None
        _, valid = s.read(0, 0, 16, 16)
        assert valid.sum() == 64 and not s.all_invalid()
    nan = write_geotiff(tmp_path / "nan.tif", np.full((1, 40, 40), np.nan, np.float32))
    with open_scene(nan, overview_max=8) as s:
        assert s.overview_valid_fraction == 0.0 and s.all_invalid()
    # a single valid pixel the overview misses: the full check still finds it
    one = np.full((1, 40, 40), np.nan, np.float32)
    one[0, 37, 38] = 1.0
    with open_scene(write_geotiff(tmp_path / "one.tif", one), overview_max=8) as s:
        assert s.overview_valid_fraction == 0.0 and not s.all_invalid()


def test_geographic_moon_lonlat_and_radius(tmp_path):
    t = from_origin(10.0, 5.0, 0.01, 0.02)  # degrees
    p = write_geotiff(tmp_path / "moon.tif", np.ones((1, 50, 60), np.uint16), crs=MOON,
                      transform=t)
    with open_scene(p) as s:
        assert s.georeferenced and s.crs.is_geographic
        assert body_radius_m(s.crs) == R_MOON and s.body_radius_m == R_MOON
        assert s.pixel_size_m == pytest.approx(np.deg2rad(0.02) * R_MOON)
        rows, cols = np.array([0, 10, 49]), np.array([0, 33, 59])
        lon, lat = s.pixel_to_lonlat(rows, cols)
        for r, c, lo, la in zip(rows, cols, lon, lat):
            x, y = t @ (c + 0.5, r + 0.5)
            assert abs(lo - x) < 1e-6 and abs(la - y) < 1e-6
        r, c = s.lonlat_to_pixel(lon, lat)
        np.testing.assert_allclose(r, rows, atol=1e-9)
        np.testing.assert_allclose(c, cols, atol=1e-9)
        wt = s.window_transform(10, 20)
        assert wt @ (0, 0) == pytest.approx(t @ (20, 10))


def test_projected_moon_lonlat_through_body_crs(tmp_path):
    t = from_origin(100_000.0, 300_000.0, 50.0, 50.0)  # metres, equirectangular, clon 0
    p = write_geotiff(tmp_path / "eqc.tif", np.ones((1, 40, 30), np.float32), crs=MOON_EQC,
                      transform=t)
    with open_scene(p) as s:
        assert s.pixel_size_m == 50.0 and s.body_radius_m == R_MOON
        assert geographic_crs(s.crs).is_geographic
        rows, cols = np.array([[0, 39]]), np.array([[0, 29]])
        lon, lat = s.pixel_to_lonlat(rows, cols)
        assert lon.shape == (1, 2)
        x, y = s.xy(rows, cols)
        np.testing.assert_allclose(lon, np.rad2deg(x / R_MOON), atol=1e-6)
        np.testing.assert_allclose(lat, np.rad2deg(y / R_MOON), atol=1e-6)
        back_r, back_c = s.lonlat_to_pixel(lon, lat)
        np.testing.assert_allclose(back_r, rows, atol=1e-6)
        np.testing.assert_allclose(back_c, cols, atol=1e-6)
        assert s.window_bounds(10, 5, 20, 4) == (100_250.0, 298_500.0, 100_450.0, 299_500.0)
    plain = write_geotiff(tmp_path / "plain.tif", np.ones((1, 4, 4), np.uint8))
    with open_scene(plain) as s:
        assert not s.georeferenced and s.pixel_size_m is None
        with pytest.raises(RasterError, match="plain.tif: not georeferenced"):
            s.pixel_to_lonlat([0], [0])


LABEL = """PDS_VERSION_ID = PDS3
OBJECT = COMPRESSED_FILE
  FILE_NAME = "{name}.JP2"
  RECORD_TYPE = UNDEFINED
  ENCODING_TYPE = "JP2"
END_OBJECT = COMPRESSED_FILE
OBJECT = UNCOMPRESSED_FILE
  FILE_NAME = "{name}.IMG"
  ^IMAGE = "{name}.IMG"
  OBJECT = IMAGE
    LINES = {h}
    LINE_SAMPLES = {w}
    SAMPLE_BITS = 16
  END_OBJECT = IMAGE
END_OBJECT = UNCOMPRESSED_FILE
END
"""


def test_jp2_with_pds_label_beside_it(tmp_path):
    h, w = 48, 64
    arr = (np.arange(h * w).reshape(1, h, w) % 1000 + 1).astype(np.uint16)
    jp2 = tmp_path / "ESP_000001_1234_RED.JP2"
    with rasterio.open(jp2, "w", driver="JP2OpenJPEG", width=w, height=h, count=1,
                       dtype="uint16", crs=MOON_EQC, transform=from_origin(0, 0, 0.25, 0.25),
                       QUALITY=100, REVERSIBLE=True) as dst:
        dst.write(arr)
    (tmp_path / "ESP_000001_1234_RED.LBL").write_text(LABEL.format(name=jp2.stem, h=h, w=w))
    for path in (jp2, jp2.with_suffix(".LBL")):
        with open_scene(path) as s:
            assert (s.height, s.width, s.dtype) == (h, w, "uint16")
            assert s.georeferenced and s.pixel_size_m == 0.25
            data, valid = s.read(4, 8, 8, 8)
            np.testing.assert_array_equal(data, arr[:, 4:12, 8:16])
            assert valid.all()
            u8, _ = s.read_uint8(0, 0, h, w)
            assert u8.min() >= 1 and u8.max() == 255


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(RasterError, match="missing.tif: file not found"):
        open_scene(tmp_path / "missing.tif")
    junk = tmp_path / "junk.jp2"
    junk.write_bytes(b"\x00\x00\x00\x0cjP  not really")
    with pytest.raises(RasterError, match="junk.jp2: not a readable raster"):
        open_scene(junk)
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(RasterError, match="empty.tif: file is empty"):
        open_scene(tmp_path / "empty.tif")
    arr = np.random.default_rng(1).integers(0, 60000, (1, 512, 512)).astype(np.uint16)
    good = write_geotiff(tmp_path / "good.tif", arr, compress="none")
    raw = good.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: len(raw) // 2])
    with open_scene(cut, stretch=(0, 60000)) as s:
        s.read(0, 0, 16, 16)  # the first tile is still there
        with pytest.raises(RasterError, match=r"cut.tif: truncated or corrupt data in window "
                                              r"rows 384\.\.512"):
            s.read(384, 384, 128, 128)
    with open_scene(cut) as s, pytest.raises(RasterError, match="cut.tif: truncated"):
        _ = s.stretch
    jp2 = tmp_path / "good.jp2"
    with rasterio.open(jp2, "w", driver="JP2OpenJPEG", width=512, height=512, count=1,
                       dtype="uint16", QUALITY=100, REVERSIBLE=True, BLOCKXSIZE=128,
                       BLOCKYSIZE=128) as dst:
        dst.write(arr)
    cut_jp2 = tmp_path / "cut.jp2"
    cut_jp2.write_bytes(jp2.read_bytes()[: jp2.stat().st_size * 2 // 3])
    with open_scene(cut_jp2, stretch=(0, 60000)) as s:
        np.testing.assert_array_equal(s.read(0, 0, 128, 128)[0], arr[:, :128, :128])
        with pytest.raises(RasterError, match=r"cut.jp2: truncated or corrupt data in window"):
            s.read(384, 384, 128, 128)


def test_stretch_measured_once_on_a_decimated_read(tmp_path, monkeypatch):
    arr = np.linspace(0, 4000, 300 * 500, dtype=np.float32).reshape(1, 300, 500)
    p = write_geotiff(tmp_path / "big.tif", arr)
    shapes = []
    with open_scene(p, percentiles=(1, 99), overview_max=100) as s:
        real_read = s.dataset.read

        def spy(*args, **kwargs):
            shapes.append(kwargs.get("out_shape"))
            return real_read(*args, **kwargs)

        monkeypatch.setattr(s.dataset, "read", spy)
        lo, hi = s.stretch
        assert s.stretch == (lo, hi)
        assert shapes == [(1, 60, 100)] and s.overview_shape == (1, 60, 100)
        assert lo == pytest.approx(40, abs=20) and hi == pytest.approx(3960, abs=20)
        s.read_uint8(0, 0, 8, 8)
        assert len(shapes) == 2 and shapes[1] is None  # windows are plain windowed reads


def test_pixel_helpers_match_the_ice_chunker_rules():
    bands = np.array([[[0, 10], [255, 7]], [[0, 20], [0, 7]], [[0, 30], [0, 7]]], np.uint16)
    gray = to_gray(bands)
    assert gray.dtype == np.float32
    assert gray[0, 1] == pytest.approx(0.299 * 10 + 0.587 * 20 + 0.114 * 30)
    np.testing.assert_array_equal(nodata_mask(bands, 0), [[True, False], [False, False]])
    np.testing.assert_array_equal(nodata_mask(bands, None), np.zeros((2, 2), bool))
    # any band at nodata (the dune mapper's rule): (1, 0) has bands 255, 0, 0
    np.testing.assert_array_equal(nodata_mask(bands, 0, any_band=True),
                                  [[True, False], [True, False]])
    f = bands.astype(np.float32)
    f[1, 1, 0] = np.nan  # NaN in one band only: invalid, with or without a nodata value
    for nd in (None, np.nan, 0):
        np.testing.assert_array_equal(nodata_mask(f, nd), [[nd == 0, False], [True, False]])
    out = to_uint8(np.array([[0.0, 50.0], [100.0, 200.0]], np.float32),
                   np.array([[True, False], [False, False]]), (50.0, 100.0))
    np.testing.assert_array_equal(out, [[0, 1], [255, 255]])
    assert to_uint8(np.array([0.0, 3.4]), None, None).tolist() == [1, 3]


PDS3_LABEL = """PDS_VERSION_ID = PDS3
RECORD_TYPE = FIXED_LENGTH
RECORD_BYTES = {rb}
FILE_RECORDS = {h}
^IMAGE = "{name}"
OBJECT = IMAGE
  LINES = {h}
  LINE_SAMPLES = {w}
  SAMPLE_TYPE = LSB_INTEGER
  SAMPLE_BITS = 16
  BANDS = 1
END_OBJECT = IMAGE
END
"""


def test_isis_cube_pds3_image_png_and_jpeg(tmp_path):
    from PIL import Image

    h, w = 20, 30
    arr = (np.arange(h * w).reshape(1, h, w) % 500).astype(np.int16)
    cub = tmp_path / "x.cub"
    with rasterio.open(cub, "w", driver="ISIS3", width=w, height=h, count=1, dtype="int16",
                       crs="IAU_2015:49910", transform=from_origin(0, 0, 25, 25)) as dst:
        dst.write(arr)
    with open_scene(cub) as s:
        assert s.pixel_size_m == 25.0 and s.body_radius_m == 3396190.0  # Mars
        np.testing.assert_array_equal(s.read(0, 0, h, w)[0], arr)
    img = tmp_path / "y.img"
    arr.astype("<i2").tofile(img)
    (tmp_path / "y.lbl").write_text(PDS3_LABEL.format(rb=2 * w, h=h, w=w, name=img.name))
    for path in (img, tmp_path / "y.lbl"):  # the data file or its detached label
        with open_scene(path) as s:
            np.testing.assert_array_equal(s.read(0, 0, h, w)[0], arr)
    rgba = np.full((10, 12, 4), 100, np.uint8)
    rgba[..., 3] = 255
    rgba[:3, :, 3] = 0  # transparent rows are invalid
    Image.fromarray(rgba).save(tmp_path / "z.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "z.jpg")
    with open_scene(tmp_path / "z.png") as s:
        assert s.alpha_band == 4 and not s.georeferenced
        u8, valid = s.read_uint8(0, 0, 10, 12, gray=True)
        assert valid.sum() == 7 * 12 and (u8[0, 3:] == 100).all() and (u8[0, :3] == 0).all()
        _, valid1 = s.read(0, 0, 10, 12, bands=[1])  # alpha applies to any band read
        np.testing.assert_array_equal(valid1, valid)
    with open_scene(tmp_path / "z.jpg") as s:
        u8, valid = s.read_uint8(0, 0, 10, 12)
        assert u8.shape == (3, 10, 12) and valid.all() and s.stretch is None


def test_resampled_reads_keep_validity(tmp_path):
    arr = np.arange(40 * 60, dtype=np.float32).reshape(1, 40, 60)
    arr[0, :4, :4] = np.nan
    p = write_geotiff(tmp_path / "r.tif", arr)
    with open_scene(p, stretch=(0.0, 2400.0)) as s:
        half, valid = s.read(0, 0, 40, 60, out_shape=(20, 30), resampling="average")
        assert half.shape == (1, 20, 30) and valid.shape == (20, 30)
        assert not valid[:2, :2].any() and valid[2:].all() and valid[:, 2:].all()
        assert np.isnan(half[0, :2, :2]).all()
        np.testing.assert_allclose(half[0, 5, 7], arr[0, 10:12, 14:16].mean())
        np.testing.assert_array_equal(s.read(0, 0, 40, 60, out_shape=(40, 60),
                                             resampling="nearest")[0][:, 4:], arr[:, 4:])
        u8, v8 = s.read_uint8(-10, 0, 40, 60, out_shape=(80, 120))  # upsampled, half outside
        assert u8.shape == (1, 80, 120) and not v8[:20].any() and v8[30:].all()
        assert (u8[0][~v8] == 0).all() and (u8[0][v8] >= 1).all()
        with pytest.raises(ValueError, match="resampling"):
            s.read(0, 0, 4, 4, out_shape=(2, 2), resampling="sideways")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_png_or_jpeg_is_an_error_not_an_empty_scene(tmp_path, ext):
    """GDAL returns the missing rows of a truncated PNG/JPEG as zeros without raising, so a
    damaged file passed as an all-nodata scene (issue 27: 'a truncated PNG chunked with 0
    failures'); it is a RasterError naming the file, and a whole file still opens."""
    from PIL import Image

    from shared.rasters import RasterError, open_scene

    rng = np.random.default_rng(0)
    whole = tmp_path / f"whole{ext}"
    Image.fromarray((rng.random((300, 300)) * 255).astype(np.uint8)).save(whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with open_scene(whole) as scene:
        assert scene.width == 300
    with pytest.raises(RasterError, match="truncated or corrupt") as exc:
        open_scene(cut)
    assert f"cut{ext}" in str(exc.value)
