"""Augmentation that carries across bodies and instruments, and --precision (bf16/fp32)."""

import numpy as np
import pytest

from crater_resunet.data.synthetic import write_dataset

AUG = dict(scale=[0.67, 1.5], rotate=True, brightness=0.1, contrast=[0.7, 1.4],
           gamma=[0.7, 1.4], blur=1.5)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from crater_resunet.data import base_dataset, index_split

    root = tmp_path_factory.mktemp("aug") / "syn"
    write_dataset(root, n_train=4, n_valid=1, size=64, seed=3)
    idx = index_split(root, "train")
    return base_dataset(idx, (64, 64), "box", False, "bgr"), len(idx)


def _batch(base, seed, aug):
    from crater_resunet.data import epoch_batches

    ds, n = base
    x, m = next(iter(epoch_batches(ds, n, n, shuffle_seed=1, augment_seed=seed,
                                   augmentation=aug)))
    return x.numpy(), m.numpy()


def test_augmentation_is_seeded_in_range_and_keeps_binary_masks(base):
    x1, m1 = _batch(base, 5, AUG)
    x2, m2 = _batch(base, 5, AUG)
    x3, _ = _batch(base, 6, AUG)
    plain, _ = _batch(base, 5, None)
    assert np.array_equal(x1, x2) and np.array_equal(m1, m2)   # same seed, same batch
    assert not np.array_equal(x1, x3)                           # another seed, another batch
    assert not np.allclose(x1, plain)                           # the ops did something
    assert x1.min() >= 0.0 and x1.max() <= 1.0
    assert set(np.unique(m1)) <= {0.0, 1.0}


def test_geometric_ops_move_image_and_mask_together(base):
    """A bright square and its mask stay on top of each other after rotation and zoom."""
    import tensorflow as tf

    from crater_resunet.data import augment_pair

    img = np.zeros((64, 64, 3), np.float32)
    img[20:36, 24:40] = 1.0
    mask = (img[..., :1] > 0.5).astype(np.float32)
    for s in range(6):
        x, m = augment_pair(tf.constant(img), tf.constant(mask), tf.constant([s, s + 7]),
                            {"scale": [0.7, 1.4], "rotate": True})
        bright = x.numpy().mean(-1) > 0.5
        m = m.numpy()[..., 0] > 0.5
        inter = (bright & m).sum() / max(1, (bright | m).sum())
        assert inter > 0.85, (s, inter)


def test_augmentation_config_errors_are_one_line():
    from crater_resunet.data import check_augmentation

    with pytest.raises(ValueError, match="unknown key"):
        check_augmentation({"shear": 0.1})
    with pytest.raises(ValueError, match="scale"):
        check_augmentation({"scale": [1.5, 0.5]})
    assert check_augmentation(None) == {}


def test_bf16_and_fp32_predictions_of_a_trained_model_agree(tmp_path):
    """A briefly trained model, run in fp32 and rebuilt under mixed_bfloat16: the masks
    (threshold 0.5) agree on at least 99 % of the pixels."""
    import keras

    from crater_resunet.model import build_resunet, compile_model, with_precision

    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((8, 64, 64, 3)).astype(np.float32) * 0.3
    y = np.zeros((8, 64, 64, 1), np.float32)
    for i in range(8):
        r, c = rng.integers(12, 52, 2)
        x[i, r - 8:r + 8, c - 8:c + 8] += 0.6
        y[i, r - 8:r + 8, c - 8:c + 8] = 1.0
    model = build_resunet((64, 64, 3), 4, bn_momentum=0.9)
    compile_model(model, 1e-2, 0.0, run_eagerly=True)
    model.fit(x, y, batch_size=4, epochs=6, verbose=0)
    p32 = model.predict(x, verbose=0)
    twin = with_precision(model, "bf16")
    assert twin.get_layer("enc1_conv1").dtype_policy.name == "mixed_bfloat16"
    assert twin.get_layer("mask").dtype_policy.name == "float32"
    p16 = twin.predict(x, verbose=0)
    keras.mixed_precision.set_global_policy("float32")
    assert p16.dtype == np.float32
    assert 0.02 < (p32 >= 0.5).mean() < 0.98  # the model marks something: a real check
    agree = ((p32 >= 0.5) == (p16 >= 0.5)).mean()
    assert agree >= 0.99, agree
    assert with_precision(model, "fp32") is model


def test_precision_resolution_follows_the_cpu(monkeypatch, tmp_path):
    import shared.precision as sp
    from crater_resunet.train import PROFILES, resolve_run_precision
    from shared.configs import load_config

    cfg = load_config("quick", PROFILES)
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(sp, "cpu_has_native_bf16", lambda native=native: native)
        assert resolve_run_precision(cfg)["train"]["precision"] == want
    paper = load_config("paper", PROFILES)
    assert resolve_run_precision(paper)["train"]["precision"] == "fp32"
    cfg["train"]["precision"] = "fp16"
    from shared.errors import UserError

    with pytest.raises(UserError, match="train.precision"):
        resolve_run_precision(cfg)
