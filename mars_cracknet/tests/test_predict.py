import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from mars_cracknet.checkpoint import save_weights
from mars_cracknet.inference import predict_tensor
from mars_cracknet.models import UNet
from mars_cracknet.predict import main


def _pointwise(batch):
    return batch[:, 0] / 255.0


def _tiled(image, tile, overlap, predict=_pointwise):
    """Mars-CrackNet's tiling (shared.engine, edge pad, its linear blend) of an (h, w, 3)
    image, as predict_image runs it."""
    from mars_cracknet.predict import BLEND
    from shared import engine

    h, w = image.shape[:2]
    out = engine.ArrayWriter(h, w)
    engine.run(engine.ArrayReader(np.moveaxis(image, -1, 0)), predict, h, w, tile, [out],
               stride=tile - overlap, edge="pad", blend=BLEND, progress=False)
    return out.prob[0]


@pytest.mark.parametrize("hw,tile,overlap", [((100, 130), 32, 8), ((64, 64), 64, 16),
                                             ((257, 95), 64, 20)])
def test_tiles_blend_to_the_untiled_result(hw, tile, overlap):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
    got = _tiled(image, tile, overlap)
    assert got.shape == hw
    np.testing.assert_allclose(got, image[..., 0] / 255.0, atol=1e-5)


def test_tiled_memory_is_bounded():
    """A 3000 x 3000 image in 128-px tiles, streamed: never a full-size array."""
    from mars_cracknet.predict import BLEND
    from shared import engine

    class Count:
        n = 0

        def write(self, row0, prob, valid):
            Count.n += prob.shape[1]

    def read(win):
        return np.zeros((3, 128, 128), np.uint8), None

    tracemalloc.start()
    engine.run(read, _pointwise, 3000, 3000, 128, [Count()], stride=96, edge="pad",
               blend=BLEND, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert Count.n == 3000
    assert peak < 12e6  # a full float32 map would take 36 MB


def test_predict_tensor_pads_any_size():
    model = UNet(1, width=8).eval()
    out = predict_tensor(model, torch.rand(1, 3, 50, 70))
    assert out.shape == (1, 1, 50, 70)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.fixture(scope="module")
def unet_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "best.safetensors"
    save_weights(path, UNet(1, width=8), "unet")
    return path


def test_predict_png_folder_with_metrics(tmp_path, unet_ckpt):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(1)
    for i, hw in enumerate([(40, 56), (64, 64)]):
        Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(imgs / f"i{i}.png")
        Image.fromarray((rng.random(hw) > 0.7).astype(np.uint8) * 255).save(masks / f"i{i}.png")
    out = tmp_path / "out"
    assert main([str(unet_ckpt), str(imgs), "--out", str(out), "--masks", str(masks),
                 "--prob", "--overlay", "--tile", "32", "--overlap", "8"]) == 0
    m = np.asarray(Image.open(out / "i0_mask.png"))
    assert m.shape == (40, 56) and set(np.unique(m)) <= {0, 255}
    assert (out / "i1_prob.png").is_file() and (out / "i1_overlay.png").is_file()
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "image,precision,recall,dice,jaccard" and lines[-1].startswith("mean,")
    assert len(lines) == 4


def test_predict_geotiff_keeps_crs_and_transform(tmp_path, unet_ckpt):
    import rasterio
    from rasterio.transform import from_origin

    from shared.rasters import write_geotiff

    src = tmp_path / "scene.tif"
    data = np.random.default_rng(2).integers(0, 1023, (1, 70, 90)).astype(np.uint16)
    transform = from_origin(1000.0, 2000.0, 0.25, 0.25)
    write_geotiff(src, data, crs="EPSG:32633", transform=transform)
    assert main([str(unet_ckpt), str(src), "--out", str(tmp_path / "o"), "--prob",
                 "--tile", "64", "--overlap", "16"]) == 0
    with rasterio.open(tmp_path / "o" / "scene_mask.tif") as ds:
        assert ds.crs.to_epsg() == 32633 and ds.transform == transform
        assert (ds.height, ds.width) == (70, 90)
        assert set(np.unique(ds.read(1))) <= {0, 255}
    assert (tmp_path / "o" / "scene_prob.tif").is_file()


def test_predict_user_errors(tmp_path, unet_ckpt, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    assert main([str(unet_ckpt), str(tmp_path / "nope.png"), "--out", str(tmp_path)]) == 2
    assert "nope.png: input not found" in capsys.readouterr().err
    assert main([str(unet_ckpt), str(img), "--out", str(tmp_path), "--model", "resunet"]) == 2
    assert "not 'resunet'" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.safetensors"), str(img), "--out", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "m").mkdir()
    assert main([str(unet_ckpt), str(img), "--out", str(tmp_path), "--masks",
                 str(tmp_path / "m")]) == 2
    assert "no ground-truth mask" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["nodata_value", "nan"])
def test_nodata_areas_are_nodata_in_the_outputs(tmp_path, unet_ckpt, kind):
    import rasterio
    from rasterio.transform import from_origin

    from shared.rasters import write_geotiff

    rng = np.random.default_rng(3)
    if kind == "nan":
        data = rng.random((1, 64, 80)).astype(np.float32)
        data[:, :, :20] = np.nan
        nodata = None
    else:
        data = rng.integers(1, 4000, (1, 64, 80)).astype(np.uint16)
        data[:, :, :20] = 0
        nodata = 0
    src = tmp_path / "scene.tif"
    transform = from_origin(0.0, 0.0, 1.0, 1.0)
    write_geotiff(src, data, crs="EPSG:32633", transform=transform, nodata=nodata)
    gt = tmp_path / "gt"
    gt.mkdir()
    Image.fromarray(np.full((64, 80), 255, np.uint8)).save(gt / "scene.png")
    assert main([str(unet_ckpt), str(src), "--out", str(tmp_path / "o"), "--prob",
                 "--tile", "32", "--overlap", "8", "--masks", str(gt)]) == 0
    for name in ("mask", "prob"):
        with rasterio.open(tmp_path / "o" / f"scene_{name}.tif") as ds:
            valid = ds.read_masks(1) > 0
            assert not valid[:, :20].any() and valid[:, 20:].all()
            assert (ds.read(1)[:, :20] == 0).all()
            assert ds.transform == transform
            if name == "mask":
                cracks = int((ds.read(1) > 0).sum())
    import json

    # the metrics count only valid pixels: the nodata strip is neither crack nor miss
    per_image = json.loads((tmp_path / "o" / "metrics.json").read_text())["per_image"][0]
    assert per_image["recall"] == pytest.approx(cracks / (64 * 60))


@pytest.mark.parametrize("fill", [0, np.nan])
def test_all_nodata_input_is_a_clear_error(tmp_path, unet_ckpt, capsys, fill):
    from rasterio.transform import from_origin

    from shared.rasters import write_geotiff

    src = tmp_path / "empty.tif"
    data = np.full((1, 40, 40), fill, np.float32)
    write_geotiff(src, data, crs="EPSG:32633", transform=from_origin(100.0, 200.0, 1.0, 1.0),
                  nodata=0 if fill == 0 else None)
    assert main([str(unet_ckpt), str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {src}") and "no valid pixels" in err and "\n" not in err


def test_truncated_geotiff_and_output_under_a_file(tmp_path, unet_ckpt, capsys):
    from rasterio.transform import from_origin

    from shared.rasters import write_geotiff

    src = tmp_path / "scene.tif"
    write_geotiff(src, np.random.default_rng(0).integers(0, 255, (1, 256, 256)).astype(
        np.uint16), crs="EPSG:32633", transform=from_origin(100.0, 200.0, 1.0, 1.0))
    raw = src.read_bytes()
    src.write_bytes(raw[: len(raw) // 2])
    assert main([str(unet_ckpt), str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {src}") and "\n" not in err
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    assert main([str(unet_ckpt), str(img), "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file" in err and "\n" not in err
