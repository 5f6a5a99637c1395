"""Inputs of the engine fixtures (issue 25): a tiny fixed torch model and small generated
images. ``python -m mars_cracknet.tests.engine_fixture_inputs`` re-makes
``fixtures/engine_before.npz`` with the code of the day (it was made once, before the tiled
inference moved into ``shared/engine.py``; ``test_engine_fixtures.py`` checks the moved code
against it)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "engine_before.npz"
TILE, OVERLAP = 32, 8


def tiny_model():
    """Two 3x3 convolutions (logits), weights from a fixed numpy generator."""
    import torch

    rng = np.random.default_rng(25)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 1, 3, padding=1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32)
                                     * 0.5))
        net[2].bias.fill_(6.5)  # probabilities spread around 0.5 on these images
    return net.eval()


def rgb_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 (h, w, 3): a few dark lines on a textured ground, every value in 1..255."""
    rng = np.random.default_rng(seed)
    img = (90 + 80 * rng.random((h, w, 3))).astype(np.uint8)
    img[h // 3, :] = 10
    img[:, w // 2] = 20
    np.fill_diagonal(img[..., 0], 5)
    return img


def write_png(path: Path, h: int = 70, w: int = 90) -> Path:
    from PIL import Image

    Image.fromarray(rgb_image(h, w)).save(path)
    return path


def write_raster(path: Path, h: int = 80, w: int = 100) -> Path:
    """uint8 RGB GeoTIFF with nodata 0 and a nodata block."""
    import rasterio
    from affine import Affine

    arr = np.moveaxis(rgb_image(h, w, seed=1), -1, 0).copy()
    arr[:, 50:70, 10:40] = 0
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                       crs="EPSG:32610", nodata=0,
                       transform=Affine(0.25, 0, 500000.0, 0, -0.25, 4100000.0)) as dst:
        dst.write(arr)
    return path


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def read_tif(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def probability(model, source) -> np.ndarray:
    """The float crack probability of a source. Before the move (when the fixture was made):
    ``mars_cracknet.inference.iter_tiled_probability(source.read, ...)`` with a per-tile
    ``predict_tensor`` (the code of commit 2405f31); after it: ``shared.engine`` with the
    linear blend, as ``predict_image`` runs it."""
    from mars_cracknet.predict import BLEND, torch_predict_fn
    from shared import engine

    out = engine.ArrayWriter(source.height, source.width)
    engine.run(source.reader, torch_predict_fn(model), source.height, source.width, TILE,
               [out], stride=TILE - OVERLAP, edge="pad", blend=BLEND, batch_size=4,
               progress=False)
    return out.prob[0]


def outputs(tmp: Path) -> dict[str, np.ndarray]:
    from mars_cracknet.predict import open_source, predict_image

    model = tiny_model()
    out = {}
    for kind, path in (("png", write_png(tmp / "a.png")), ("tif", write_raster(tmp / "r.tif"))):
        source = open_source(path)
        try:
            out[f"{kind}_prob_float"] = probability(model, source)
            res = predict_image(model, source, tmp / kind, tile=TILE, overlap=OVERLAP,
                                prob=True)
        finally:
            source.close()
        read = read_png if kind == "png" else read_tif
        out[f"{kind}_mask"] = read(Path(res["mask"]))
        out[f"{kind}_prob"] = read(Path(res["prob"]))
    return out


def main() -> int:
    import tempfile

    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("png", "tif"):
            (Path(tmp) / kind).mkdir()
        out = outputs(Path(tmp))
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **out)
    for k, v in out.items():
        print(k, v.shape, v.dtype, float(np.mean(v)))
    print(FIXTURE, FIXTURE.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
