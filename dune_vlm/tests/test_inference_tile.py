import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import from_origin
from torch import nn

from dune_vlm.inference_tile import (
    DEFAULT_BLEND,
    NODATA_OUT,
    TileInferenceError,
    main,
    predict_raster,
)
from shared.engine import Blend, plan
from shared.rasters import write_geotiff

CRS_UTM = CRS.from_epsg(32733)
TRANSFORM = from_origin(420000, 7330000, 10, 10)
NODATA = -9999.0


class LocalNet(nn.Module):
    """A model with a 5x5 receptive field: window predictions can equal whole-image ones."""

    in_chans = 64

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(64, 10, 5, padding=2)

    def forward(self, x, text=None):
        return self.conv(x) * 4.0


def raster(tmp_path, h=150, w=170, bands=64, crs=CRS_UTM, name="in.tif"):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(bands, h, w)).astype(np.float32)
    img[:, :20, :30] = NODATA  # a nodata corner
    img[:, 100:104, 60:64] = NODATA  # a nodata hole inside
    path = tmp_path / name
    write_geotiff(path, img, crs=crs, transform=TRANSFORM, nodata=NODATA)
    return path, img


def test_default_blend_is_the_mappers_cosine_with_margin():
    """The engine's cosine weight with the default margin (overlap / 4) is the mapper's rule."""
    assert DEFAULT_BLEND == "cosine"
    w = Blend(DEFAULT_BLEND).weight((64, 64), (32, 32))[32]  # one row through the middle
    assert w[:8].max() == 0 and w[-8:].max() == 0 and w[24:40].min() == 1
    assert np.all(np.diff(w[:32]) >= 0)  # smooth monotone ramp, no step inside
    border = Blend(DEFAULT_BLEND).weight((64, 64), (32, 32), (False,) * 4)
    assert border.min() == 1  # raster border: full weight
    assert [w.row for w in plan(150, 40, 64, 32)] == [0, 32, 64, 86]


def test_blended_map_equals_whole_image_prediction(tmp_path):
    path, img = raster(tmp_path)
    model = LocalNet().eval()
    out = tmp_path / "map.tif"
    stats = predict_raster(path, out, model, tile_size=64, stride=32, batch_size=3,
                           confidence=True, progress=False,
                           colormap={0: (255, 0, 0, 255), 1: (0, 255, 0, 255)})
    x = img.copy()
    bad = (x == NODATA).any(0)
    x[:, bad] = 0
    with torch.no_grad():
        whole = model(torch.from_numpy(x)[None]).argmax(1)[0].numpy()
    with rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.width, dst.height) == (CRS_UTM, TRANSFORM, 170, 150)
        assert dst.count == 2 and dst.dtypes[0] == "uint8" and dst.nodata == NODATA_OUT
        assert dst.profile.get("compress", "").lower() == "deflate"
        assert dst.colormap(1)[1][:3] == (0, 255, 0)
        pred, conf = dst.read(1), dst.read(2)
    assert (pred[bad] == NODATA_OUT).all() and (conf[bad] == NODATA_OUT).all()
    assert np.array_equal(pred[~bad], whole[~bad])  # exact: every pixel, window edges too
    assert conf[~bad].min() >= 10 and conf[~bad].max() <= 100
    assert stats["windows_predicted"] == stats["windows_total"] == 4 * 5


def test_fusion_model_map_is_seamless(tmp_path):
    """The real transformer: windows see less context than the whole image, so maps agree
    with the direct prediction on most pixels away from window edges, not all."""
    from dune_vlm.models.fusion import build_fusion_model

    path, img = raster(tmp_path, h=128, w=128)
    torch.manual_seed(0)
    model = build_fusion_model(10, 16, depths=(1, 1, 1, 1)).eval()
    text = torch.nn.functional.normalize(torch.randn(10, 16), dim=1)
    out = tmp_path / "fusion.tif"
    predict_raster(path, out, model, text, tile_size=64, stride=32, progress=False)
    x = img.copy()
    bad = (x == NODATA).any(0)
    x[:, bad] = 0
    with torch.no_grad():
        whole = model(torch.from_numpy(x)[None], text).argmax(1)[0].numpy()
    with rasterio.open(out) as dst:
        pred = dst.read(1)
    assert (pred[bad] == NODATA_OUT).all() and (pred[~bad] < 10).all()
    assert (pred[~bad] == whole[~bad]).mean() > 0.5


def test_errors_are_clear(tmp_path, capsys):
    model = LocalNet()
    path, _ = raster(tmp_path, bands=5, name="five.tif")
    with pytest.raises(TileInferenceError, match="five.tif: has 5 bands, the model expects 64"):
        predict_raster(path, tmp_path / "o.tif", model, tile_size=64, stride=32, progress=False)
    path, _ = raster(tmp_path, h=40, w=40, crs=None, name="nocrs.tif")
    with pytest.raises(TileInferenceError, match="nocrs.tif: has no CRS"):
        predict_raster(path, tmp_path / "o.tif", model, tile_size=64, stride=32, progress=False)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(TileInferenceError, match="junk.tif: not a readable raster"):
        predict_raster(junk, tmp_path / "o.tif", model, tile_size=64, stride=32, progress=False)
    with pytest.raises(TileInferenceError, match="multiple of 32"):
        predict_raster(junk, tmp_path / "o.tif", model, tile_size=50, stride=25, progress=False)
    assert not (tmp_path / "o.tif").exists()
    rc = main(["--input_tif", str(tmp_path / "missing.tif"), "--output_tif",
               str(tmp_path / "o.tif"), "--weights", str(tmp_path / "none.pt")])
    assert rc == 2 and "none.pt: checkpoint not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known, unmet since the strip mapper (README, Memory): "
                   "4,096^2 needs x1.34 of 1,024^2 with the row ring, x1.28 window by window; "
                   "the output strip and the ring grow with the raster's width")
def test_peak_rss_is_bounded_whatever_the_raster_size(tmp_path):
    """1,024^2 and 4,096^2 int8 rasters, paper tiling: peak RSS < 2 GB, growth <= 20 %."""
    import json

    from dune_vlm.measure_memory import main as measure

    out = tmp_path / "mem.json"
    assert measure(["--sizes", "1024", "4096", "--workdir", str(tmp_path), "--out", str(out),
                    "--no_progress"]) == 0
    small, big = json.loads(out.read_text())
    assert small["peak_rss_mb"] < 2000 and big["peak_rss_mb"] < 2000
    assert big["peak_rss_mb"] <= 1.2 * small["peak_rss_mb"]
    assert big["windows_predicted"] > 10 * small["windows_predicted"]


class CountingNet(LocalNet):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, text=None):
        self.seen += [tuple(map(int, v)) for v in x[:, :2, 0, 0].mul(1000).round()]
        return super().forward(x, text)


def test_each_window_predicted_exactly_once(tmp_path):
    """Predictions == planned windows (no window is predicted twice, none is lost)."""
    path, _ = raster(tmp_path, h=300, w=260)
    model = CountingNet().eval()
    stats = predict_raster(path, tmp_path / "m.tif", model, tile_size=64, stride=32,
                           batch_size=4, progress=False)
    planned = len(plan(300, 260, 64, 32))
    assert stats["windows_total"] == planned == 9 * 8
    assert len(model.seen) == stats["windows_predicted"] == planned - \
        stats["windows_skipped_nodata"]


def test_row_reader_decodes_each_row_once_and_equals_window_reads(tmp_path, monkeypatch):
    """The ring reader (stride 48 of tile 64: windows wrap round the ring) reads every raster
    row exactly once, and its map is the one of window-by-window reads."""
    from shared import engine

    path, _ = raster(tmp_path, h=300, w=260)
    reads = []
    orig = engine.RowRingReader._read

    def spy(self, row, slot, n):
        reads.extend(range(row, min(row + n, self.height)))
        return orig(self, row, slot, n)

    monkeypatch.setattr(engine.RowRingReader, "_read", spy)
    maps = []
    for limit in (1024, 0):
        out = tmp_path / f"map{limit}.tif"
        stats = predict_raster(path, out, LocalNet().eval(), tile_size=64, stride=48,
                               batch_size=3, confidence=True, progress=False,
                               max_rows_mb=limit)
        with rasterio.open(out) as dst:
            maps.append(dst.read())
        assert stats["reader"] == ("RowRingReader" if limit else "SceneReader")
    assert sorted(reads) == list(range(300))
    assert np.array_equal(maps[0], maps[1])


def test_damaged_blocks_are_one_clear_error(tmp_path):
    path, _ = raster(tmp_path, h=300, w=260)
    data = path.read_bytes()
    bad = tmp_path / "damaged.tif"
    bad.write_bytes(data[:len(data) // 2])  # the header survives, later blocks are cut
    with pytest.raises(TileInferenceError, match="damaged.tif.*(truncated or corrupt|readable)"):
        predict_raster(bad, tmp_path / "o.tif", LocalNet().eval(), tile_size=64, stride=32,
                       progress=False)
    assert not (tmp_path / "o.tif").exists()


def test_map_geotiff_has_class_names_and_a_qgis_style(tmp_path):
    """What QGIS shows: the class map band carries its description, colour table and class
    names (GDAL metadata, and category names + attribute table in the .aux.xml); a paletted
    .qml style with the class names lies beside it."""
    import xml.etree.ElementTree as ET

    from dune_vlm.utils.config import class_colors, class_names

    path, _ = raster(tmp_path, h=64, w=64)
    names, colors = class_names(), {k: (*c, 255) for k, c in class_colors().items()}
    out = tmp_path / "map.tif"
    stats = predict_raster(path, out, LocalNet().eval(), tile_size=32, stride=16, batch_size=2,
                           colormap=colors, class_names=names, progress=False)
    with rasterio.open(out) as src:
        assert src.descriptions[0] == "dune class (255 = nodata)"
        assert src.colormap(1)[3][:3] == tuple(class_colors()[3])
        assert src.colormap(1)[NODATA_OUT][3] == 0
        tags = src.tags(1)
        assert [tags[f"CLASS_{i}"] for i in range(len(names))] == names
    qml = out.with_suffix(".qml")
    assert sorted(stats["sidecars"]) == sorted([str(qml), str(out) + ".aux.xml"])
    palette = ET.parse(qml).getroot().find("pipe/rasterrenderer/colorPalette")
    assert [e.get("label") for e in palette] == names
    cats = ET.parse(str(out) + ".aux.xml").getroot().find("PAMRasterBand/CategoryNames")
    assert [c.text for c in cats] == names


@pytest.mark.parametrize("max_rows_mb", [1024, 0], ids=["ring", "windows"])
def test_wide_raster_memory_does_not_grow_with_height(tmp_path, max_rows_mb):
    """A wide raster (1,024 px) mapped at two heights (64 and 192 rows): the arrays the mapper
    allocates (numpy, traced) peak at the same size, within the ring + strip + batch bound."""
    import tracemalloc

    from rasterio.crs import CRS

    rng = np.random.default_rng(0)
    peaks = []
    for h in (64, 192):
        img = rng.integers(-100, 100, size=(64, h, 1024), dtype=np.int8)
        path = tmp_path / f"wide{h}.tif"
        write_geotiff(path, img, crs=CRS.from_epsg(32733), transform=TRANSFORM, nodata=-128)
        del img
        model = LocalNet().eval()
        tracemalloc.start()
        stats = predict_raster(path, tmp_path / f"map{h}.tif", model, tile_size=64, stride=32,
                               batch_size=4, progress=False, max_rows_mb=max_rows_mb)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert stats["windows_predicted"] == stats["windows_total"]
    ring = 64 * (64 + 32) * 1024 if max_rows_mb else 0  # int8 rows of the ring
    strip = (10 + 1) * 64 * 1024 * 4  # float32 class sums + weight sums of one tile's rows
    batch = 4 * 64 * 64 * 64 * 4 + 4 * 10 * 64 * 64 * 4  # a batch in and out
    # the background reader may hold one more block at the peak, depending on thread timing
    # (1.117x measured once under a loaded CI run); growth with height (3x the rows) would
    # show as about 3x
    assert peaks[1] <= 1.25 * peaks[0]
    assert peaks[0] < 2 * (ring + strip + batch) + 8 * 2**20
