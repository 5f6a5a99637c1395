"""The network: the paper's parameter count, and save -> safe-mode load -> same output."""

import numpy as np
import pytest

from shared.errors import UserError


def test_parameter_count_at_paper_width():
    from crater_resunet.model import build_resunet, count_params

    model = build_resunet((256, 256, 3), 64)
    assert count_params(model) == (142_609_217, 142_585_153)
    assert model.output_shape == (None, 256, 256, 1)


def test_width_knob_and_bad_sizes():
    from crater_resunet.model import build_resunet, count_params

    assert count_params(build_resunet((256, 256, 3), 8))[0] == 2_235_753
    model = build_resunet((64, 64, 3), 4, bn_momentum=0.9)
    bns = [layer for layer in model.layers if layer.__class__.__name__ == "BatchNormalization"]
    assert len(bns) == 22 and all(layer.momentum == 0.9 for layer in bns)
    with pytest.raises(ValueError, match="bn_momentum"):
        build_resunet((64, 64, 3), 4, bn_momentum=1.0)
    with pytest.raises(ValueError, match="multiples of 32"):
        build_resunet((100, 100, 3), 8)


def test_save_and_safe_mode_load_give_same_predictions(tmp_path):
    import keras

    from crater_resunet.model import build_resunet, compile_model, load_model, save_model

    model = compile_model(build_resunet((64, 64, 3), 4), run_eagerly=True)
    rng = np.random.default_rng(0)
    # non-trivial weights and batch-norm statistics (variances kept positive)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") if "variance" in v.path
                       else rng.normal(0, 0.2, w.shape).astype("float32")
                       for v, w in zip(model.weights, model.get_weights())])
    model.optimizer.build(model.trainable_variables)
    x = rng.random((2, 64, 64, 3)).astype("float32")
    before = model.predict(x, verbose=0)
    path = save_model(model, tmp_path / "m.keras")
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left nothing behind
    # plain keras loader, safe mode, no custom_objects: our objects are registered
    again = keras.saving.load_model(path, safe_mode=True)
    assert np.allclose(before, np.asarray(again(x, training=False)), atol=1e-6)
    assert again.loss.__name__ == "bce_dice_loss"
    assert again.optimizer.__class__.__name__ == "AdamW"
    assert np.allclose(np.asarray(load_model(path)(x, training=False)), before, atol=1e-6)
    with pytest.raises(UserError, match="model file not found"):  # ModelFileError
        load_model(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match=".keras"):
        save_model(model, tmp_path / "m.h5")
