"""bf16 and fp32 predictions of a trained model agree (issue 29): a tiny baseline segmenter
trained for a few dozen steps on separable generated tiles, a generated scene mapped by the
predictor (``inference_tile.main``) with ``--precision fp32`` and ``--precision bf16``: the
class maps agree on at least 99 % of pixels."""

import numpy as np

from dune_vlm.tests.conftest import make_separable_dataset


def test_bf16_and_fp32_maps_of_a_trained_model_agree(tmp_path):
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from dune_vlm.inference_tile import main as tile_main
    from dune_vlm.train import main as train_main
    from shared.rasters import write_geotiff

    data = make_separable_dataset(tmp_path / "data", n=(8, 2, 2), size=64)
    run = tmp_path / "run"
    assert train_main(["--profile", "quick", "--data_root", str(data), "--model", "baseline",
                       "--epochs", "6", "--batch_size", "2", "--lr", "1e-3",  # 24 steps
                       "--run-dir", str(run), "--no_progress", "--seed", "0"]) == 0
    # a scene of the same class prototypes (make_separable_dataset draws them first)
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(10, 64)).astype(np.float32)
    rng = np.random.default_rng(5)
    lab = np.kron(rng.integers(0, 10, (6, 8)), np.ones((16, 16), np.int64))
    img = protos[lab].transpose(2, 0, 1) + 0.3 * rng.normal(size=(64, *lab.shape))
    img = (img / np.linalg.norm(img, axis=0, keepdims=True)).astype(np.float32)
    write_geotiff(tmp_path / "scene.tif", img, crs=CRS.from_epsg(32611),
                  transform=from_origin(500000, 4000000, 10, 10))
    maps = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"map_{precision}.tif"
        assert tile_main(["--input_tif", str(tmp_path / "scene.tif"), "--output_tif", str(out),
                          "--weights", str(run / "best.pt"), "--tile_size", "64",
                          "--overlap", "16", "--confidence", "--precision", precision,
                          "--no_progress"]) == 0
        with rasterio.open(out) as dst:
            maps[precision] = dst.read()
    assert (maps["fp32"][0] == lab).mean() >= 0.9             # it learned the classes
    assert not np.array_equal(maps["fp32"][1], maps["bf16"][1])  # bf16 did run in bf16
    agree = (maps["fp32"][0] == maps["bf16"][0]).mean()
    assert agree >= 0.99, agree
