import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from shared.rasters import RasterError, geotiff_writer, open_scene, read_window, write_geotiff

CRS_UTM = CRS.from_epsg(32733)
TRANSFORM = from_origin(500000.0, 7400000.0, 10.0, 10.0)


@pytest.fixture
def raster(tmp_path):
    arr = np.arange(3 * 40 * 50, dtype=np.float32).reshape(3, 40, 50)
    return write_geotiff(tmp_path / "r.tif", arr, crs=CRS_UTM, transform=TRANSFORM,
                         nodata=-9999.0), arr


def test_geotiff_round_trip_keeps_crs_and_transform(raster):
    path, arr = raster
    with open_scene(path) as info:
        assert info.crs == CRS_UTM
        assert info.transform == TRANSFORM
        assert (info.count, info.height, info.width) == (3, 40, 50)
        assert info.dtype == "float32" and info.nodata == -9999.0
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), arr)


def test_single_band_with_colormap(tmp_path):
    cls = np.random.default_rng(0).integers(0, 3, (300, 260)).astype(np.uint8)
    p = write_geotiff(tmp_path / "c.tif", cls, crs=CRS_UTM, transform=TRANSFORM, nodata=255,
                      colormap={0: (255, 0, 0), 1: (0, 255, 0), 2: (0, 0, 255)})
    with rasterio.open(p) as src:
        assert src.count == 1 and src.nodata == 255
        assert src.colormap(1)[1][:3] == (0, 255, 0)
        assert src.profile["tiled"]
        np.testing.assert_array_equal(src.read(1), cls)


def test_read_window_inside_and_at_edge(raster):
    path, arr = raster
    np.testing.assert_array_equal(read_window(path, (10, 5, 8, 6)), arr[:, 5:11, 10:18])
    np.testing.assert_array_equal(read_window(path, (0, 0, 4, 4), bands=[2]), arr[1:2, :4, :4])
    edge = read_window(path, (45, 35, 10, 10))  # reaches 5 px past right and bottom edges
    assert edge.shape == (3, 10, 10)
    np.testing.assert_array_equal(edge[:, :5, :5], arr[:, 35:40, 45:50])
    assert (edge[:, 5:, :] == -9999.0).all() and (edge[:, :, 5:] == -9999.0).all()
    with rasterio.open(path) as src:  # open dataset reused
        np.testing.assert_array_equal(read_window(src, (1, 1, 2, 2)), arr[:, 1:3, 1:3])


def test_bad_rasters(tmp_path, raster):
    path, _ = raster
    with pytest.raises(RasterError, match="missing.tif: file not found"):
        read_window(tmp_path / "missing.tif", (0, 0, 2, 2))
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(RasterError, match="junk.tif: not a readable raster"):
        read_window(junk, (0, 0, 2, 2))
    with pytest.raises(RasterError, match="out of range"):
        read_window(path, (0, 0, 2, 2), bands=[4])
    with pytest.raises(ValueError, match="positive"):
        read_window(path, (0, 0, 0, 2))


def test_writer_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "partial.tif"
    with pytest.raises(RuntimeError):
        with geotiff_writer(out, width=10, height=10, count=1, dtype="uint8") as dst:
            dst.write(np.zeros((1, 10, 10), np.uint8))
            raise RuntimeError("interrupted")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_class_band_metadata_and_gis_sidecars(tmp_path):
    """A class mask carries its band description, colour table and class names, and a GDAL
    .aux.xml (category names, raster attribute table) and QGIS .qml lie beside it."""
    import xml.etree.ElementTree as ET

    from shared.rasters import describe_class_band, write_class_sidecars

    names, colors = ["bare", "dune", "ridge"], {0: (10, 20, 30), 1: (200, 150, 0), 2: (0, 70, 160)}
    path = tmp_path / "classes.tif"
    with geotiff_writer(path, width=8, height=8, count=1, dtype="uint8",
                        crs=CRS.from_epsg(32633), transform=from_origin(0, 80, 10, 10),
                        nodata=255) as dst:
        dst.write(np.tile(np.arange(8, dtype=np.uint8) % 3, (8, 1))[None])
        describe_class_band(dst, names, colors, description="landform class", nodata=255)
    aux, qml = write_class_sidecars(path, names, colors)
    with rasterio.open(path) as src:
        assert src.descriptions == ("landform class",)
        cmap = src.colormap(1)
        assert cmap[1] == (200, 150, 0, 255) and cmap[255][3] == 0
        assert {k: v for k, v in src.tags(1).items() if k.startswith("CLASS_")} == \
            {"CLASS_0": "bare", "CLASS_1": "dune", "CLASS_2": "ridge"}
    band = ET.parse(aux).getroot().find("PAMRasterBand")
    assert [c.text for c in band.find("CategoryNames")] == names
    rows = band.find("GDALRasterAttributeTable").findall("Row")
    assert [[f.text for f in r] for r in rows][2] == ["2", "ridge", "0", "70", "160"]
    entries = ET.parse(qml).getroot().find("pipe/rasterrenderer/colorPalette")
    assert [(e.get("value"), e.get("label"), e.get("color")) for e in entries][1] == \
        ("1", "dune", "#c89600")
    assert qml == path.with_suffix(".qml") and aux.name == "classes.tif.aux.xml"
