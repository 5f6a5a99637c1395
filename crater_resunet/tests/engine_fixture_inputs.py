"""Inputs of the engine fixtures (issue 25): a tiny fixed Keras model and small generated
images and rasters. ``python -m crater_resunet.tests.engine_fixture_inputs`` re-makes
``fixtures/engine_before.npz`` with the code of the day (it was made once, before the
sliding-window code moved into ``shared/engine.py``; ``test_engine_fixtures.py`` checks that
the moved code still gives these outputs)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "engine_before.npz"
TILE = 64
MOON = "IAU_2015:30100"
DISCS = [(20, 30, 5), (70, 100, 8), (95, 40, 6), (40, 170, 7), (110, 180, 4)]


def tiny_model():
    """Two 3x3 convolutions (5x5 receptive field, so tile edges matter), weights from a
    fixed numpy generator (not Keras's initialisers, which may change between versions)."""
    import keras

    rng = np.random.default_rng(25)
    inp = keras.Input((TILE, TILE, 3))
    # float32 whatever the global policy (a bf16 predict elsewhere in the process sets it)
    c1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", dtype="float32")
    c2 = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", dtype="float32")
    model = keras.Model(inp, c2(c1(inp)))
    c1.set_weights([(0.7 + 0.3 * rng.standard_normal((3, 3, 3, 4))).astype(np.float32) / 9,
                    (-0.1 * rng.random(4)).astype(np.float32)])
    c2.set_weights([(0.9 + 0.2 * rng.standard_normal((3, 3, 4, 1))).astype(np.float32) * 0.15,
                    np.array([-6.0], np.float32)])
    return model


def grey_scene(h: int = 130, w: int = 200, seed: int = 0) -> np.ndarray:
    """uint8 (h, w): bright discs on a noisy dark ground."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = (40 + 20 * rng.random((h, w))).astype(np.float32)
    for r, c, rad in DISCS:
        img[(yy - r) ** 2 + (xx - c) ** 2 <= rad ** 2] = 230
    img[:2] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


def float_image(h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 in [0, 1] (the in-memory tilers' input)."""
    g = grey_scene(max(h, 130), max(w, 200))[:h, :w].astype(np.float32) / 255.0
    return np.repeat(g[..., None], 3, axis=-1)


def write_png(path: Path, h: int = 130, w: int = 200) -> Path:
    from PIL import Image

    Image.fromarray(np.repeat(grey_scene(h, w)[..., None], 3, axis=-1)).save(path)
    return path


def write_raster(path: Path) -> Path:
    """uint16 GeoTIFF (Moon, degrees) with a nodata block."""
    import rasterio
    from affine import Affine

    arr = grey_scene().astype(np.uint16) * 200 + 100
    arr[60:90, 120:150] = 0
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype="uint16", crs=MOON, nodata=0,
                       transform=Affine(0.01, 0, 10.0, 0, -0.01, 5.0)) as dst:
        dst.write(arr[None])
    return path


def catalogue(csv_path: Path) -> dict[str, np.ndarray]:
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    cols = ("x", "y", "diameter", "confidence")
    return {c: np.array([float(r[c]) for r in rows], np.float64) for c in cols}


def read_tif(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def outputs(tmp: Path) -> dict[str, np.ndarray]:
    """Every output the fixture holds, made by the code of the day."""
    # predict_probability was crater_resunet.predict's when the fixture was made (2405f31)
    from crater_resunet.image_predict import predict_probability
    from crater_resunet.predict import run_prediction
    from crater_resunet.pyramid import as_predictor, tiled_probability

    model = tiny_model()
    fn, tile = as_predictor(model)
    out = {
        "image_tile": predict_probability(model, float_image(64, 130), "tile", 16),
        "image_tile_default_overlap": predict_probability(model, float_image(70, 100), "tile"),
        "image_resize": predict_probability(model, float_image(40, 60), "resize"),
        "pyramid_tiles": tiled_probability(float_image(70, 90), fn, tile, None),
        "pyramid_small": tiled_probability(float_image(40, 50), fn, tile, 8),
    }
    imgs = tmp / "images"
    imgs.mkdir()
    write_png(imgs / "a.png")
    run_prediction(model, [imgs / "a.png"], tmp / "png", mode="tile", overlap=16,
                   min_area=4, figures=False, progress=False)
    for k, v in catalogue(tmp / "png" / "craters.csv").items():
        out[f"png_cat_{k}"] = v
    tif = write_raster(tmp / "r.tif")
    run_prediction(model, [tif], tmp / "tif", overlap=16, min_area=4, figures=False,
                   progress=False, scales=[1.0, 0.5])
    out["tif_prob"] = read_tif(tmp / "tif" / "masks" / "r_prob.tif")
    out["tif_mask"] = read_tif(tmp / "tif" / "masks" / "r_mask.tif")
    out["tif_prob_s05"] = read_tif(tmp / "tif" / "masks" / "r_s0.5_prob.tif")
    for k, v in catalogue(tmp / "tif" / "craters.csv").items():
        out[f"tif_cat_{k}"] = v
    return out


def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = outputs(Path(tmp))
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **out)
    for k, v in out.items():
        print(k, v.shape, v.dtype, float(np.nanmean(v)) if v.size else None)
    print(FIXTURE, FIXTURE.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
