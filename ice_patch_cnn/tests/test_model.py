"""The network of the paper: parameter count, forward pass, safe-mode save/load."""

import numpy as np
import pytest

from ice_patch_cnn.model import build_xception, compile_model, load_model


def test_parameter_count_at_paper_shape():
    model = build_xception((1024, 1024, 1), dropout=0.5)
    assert model.count_params() == 2_728_761
    assert model.output_shape == (None, 1)
    assert model.layers[-1].get_config()["activation"] == "sigmoid"


def test_count_does_not_depend_on_chunk_size_but_on_channels():
    assert build_xception((64, 64, 1)).count_params() == 2_728_761
    assert build_xception((64, 64, 3)).count_params() == 2_728_761 + 2 * 9 * 128


def test_forward_gives_probabilities_and_rescales_uint8_range():
    model = build_xception((64, 64, 1), width_scale=0.0625)
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 1)).astype("float32")
    p = np.asarray(model(x, training=False))
    assert p.shape == (3, 1)
    assert ((p > 0) & (p < 1)).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        build_xception((64, 64))
    with pytest.raises(ValueError):
        build_xception((64, 64, 1), dropout=1.0)
    with pytest.raises(ValueError):
        build_xception((64, 64, 1), width_scale=0)


def test_save_and_load_in_safe_mode(tmp_path):
    model = compile_model(build_xception((32, 32, 1), width_scale=0.0625))
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 1)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    again = load_model(path)
    np.testing.assert_allclose(np.asarray(model(x, training=False)),
                               np.asarray(again(x, training=False)), rtol=1e-5, atol=1e-6)
    from shared.keras_models import ModelFileError  # the one safe .keras loader's error

    with pytest.raises(ModelFileError, match="missing.keras: model file not found"):
        load_model(tmp_path / "missing.keras")
    (tmp_path / "m.h5").write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"m.h5: not a .keras model"):
        load_model(tmp_path / "m.h5")
