import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dune_vlm.tests.conftest import make_separable_dataset
from dune_vlm.train import main as train_main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dunes")
    make_separable_dataset(root, n=(2, 1, 2), size=32)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(10, 24)).astype(np.float32)
    np.save(root / "text.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    (root / "regions.json").write_text(json.dumps(
        {f"r{i % 2}_{s}_{i}": f"region{i % 2}" for s in ("train", "val", "test")
         for i in range(4)}))
    return root


def _train(data, run, model, epochs, extra=()):
    text = ["--text_embed_path", str(data / "text.npy")] if model == "fusion" else []
    return train_main(["--profile", "quick", "--data_root", str(data), "--model", model, *text,
                       "--epochs", str(epochs),
                       "--batch_size", "2", "--lr", "1e-3", "--run-dir", str(run),
                       "--no_progress", "--seed", "3", *extra])


def test_tiny_fusion_train_then_evaluate(data, tmp_path):
    run = tmp_path / "fusion"
    assert _train(data, run, "fusion", 1) == 0
    for name in ("best.pt", "last.pt", "history.csv", "summary.json", "config.yaml",
                 "train.log"):
        assert (run / name).is_file(), name
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["model_spec"]["text_dim"] == 24 and ckpt["text_embeds"].shape == (10, 24)
    from dune_vlm.inference import run_evaluation

    res = run_evaluation(data, run / "best.pt", "test", out=tmp_path / "eval",
                         progress=False)
    assert 0 <= res["overall"]["OA"] <= 1 and set(res["per_region"]) == {"region0", "region1"}
    assert (tmp_path / "eval/metrics_test.json").is_file()
    assert (tmp_path / "eval/confusion_test.png").is_file()
    # the trained checkpoint maps a GeoTIFF through the inference_tile CLI
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from dune_vlm.inference_tile import main as tile_main
    from shared.rasters import write_geotiff

    img = np.random.default_rng(1).normal(size=(64, 70, 90)).astype(np.float32)
    img[:, :10] = -9999.0
    transform = from_origin(500000, 4000000, 10, 10)
    write_geotiff(tmp_path / "scene.tif", img, crs=CRS.from_epsg(32611), transform=transform,
                  nodata=-9999.0)
    assert tile_main(["--input_tif", str(tmp_path / "scene.tif"), "--output_tif",
                      str(tmp_path / "map.tif"), "--weights", str(run / "best.pt"),
                      "--tile_size", "32", "--overlap", "16",
                      "--confidence", "--no_progress"]) == 0
    with rasterio.open(tmp_path / "map.tif") as dst:
        assert (dst.width, dst.height, dst.count) == (90, 70, 2)
        assert dst.crs.to_epsg() == 32611 and dst.transform == transform
        band = dst.read(1)
        assert (band[:10] == 255).all() and (band[10:] < 10).all()
        assert dst.colormap(1)[4][:3] == (240, 228, 66)  # linear dunes, configs/classes.yml
        assert dst.tags(1)["CLASS_4"] == "linear dunes"
    with pytest.raises(ValueError, match="rows but the model has 10"):
        bad = tmp_path / "bad.npy"
        np.save(bad, np.zeros((4, 24), np.float32))
        run_evaluation(data, run / "best.pt", "test", text_embed_path=bad, out=tmp_path)


def test_resume_equals_uninterrupted_training(data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(data, a, "baseline", 2) == 0
    assert _train(data, b, "baseline", 1) == 0
    assert train_main(["--run-dir", str(b), "--resume", "--set", "train.epochs=2",
                       "--no_progress"]) == 0
    wa = torch.load(a / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # same epochs and losses (the lr column differs: b's first epoch ran a 1-epoch schedule)
    assert (a / "history.csv").read_text().splitlines()[1].split(",")[:2] == \
        (b / "history.csv").read_text().splitlines()[1].split(",")[:2]


def test_cli_errors_are_one_line(data, tmp_path):
    out = subprocess.run([sys.executable, "-m", "dune_vlm.train", "--data_root",
                          str(tmp_path / "missing"), "--epochs", "1", "--run-dir",
                          str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "missing/img_dir/train: folder not found" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "dune_vlm.inference", "--data_root", str(data),
                          "--weights", str(tmp_path / "none.pt")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "none.pt: checkpoint not found" in out.stderr
