"""The ResNet-UNet of the paper (Keras 3, any backend), its compilation and safe loading.

``build_resunet(input_shape=(256, 256, 3), base_filters=64)`` is the reference network:
five encoder levels of residual blocks (64 ... 1024 filters) each followed by 2x2 max pooling,
a 2048-filter bottleneck block, five decoder levels (2x2 stride-2 transposed convolution,
concatenation with the matching encoder output, residual block) and a 1x1 sigmoid output.
At base 64 and 256x256x3 it has 142,609,217 parameters. ``base_filters`` scales every level
(each level doubles it), so a CPU can train a narrow copy of the same graph.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import layers

from shared.keras_models import KERAS_POLICIES, ModelFileError, set_keras_precision

DEPTH = 5  # encoder levels, each halving the resolution


def resnet_block(x, filters: int, name: str, bn_momentum: float = 0.99):
    """Two 3x3 conv + BN (ReLU between), added to the input; ReLU after the sum.

    As in the reference, an input whose channel count differs from ``filters`` is first
    projected by a 1x1 convolution, and that projected tensor feeds both the residual branch
    and the identity path (this is what gives the published parameter count).
    """
    if x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, padding="same", name=f"{name}_proj")(x)
    shortcut = x
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def build_resunet(input_shape=(256, 256, 3), base_filters: int = 64, name: str = "resunet",
                  bn_momentum: float = 0.99):
    """The paper's ResNet-UNet; ``base_filters=64`` is the published width.

    ``bn_momentum`` is the batch-norm moving-average momentum (0.99 = the Keras default used by
    the reference). With only ~100 training steps (the quick profile) the moving statistics
    have not converged at 0.99 and inference-mode predictions collapse; 0.9 fixes that.
    """
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1), got {bn_momentum}")
    if base_filters < 1:
        raise ValueError(f"base_filters must be >= 1, got {base_filters}")
    h, w = input_shape[0], input_shape[1]
    step = 2 ** DEPTH
    if h is not None and w is not None and (h % step or w % step):
        raise ValueError(f"input height and width must be multiples of {step}, got {h}x{w}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    skips = []
    for level in range(DEPTH):
        x = resnet_block(x, base_filters * 2**level, name=f"enc{level + 1}",
                         bn_momentum=bn_momentum)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level + 1}")(x)
    x = resnet_block(x, base_filters * 2**DEPTH, name="bottleneck", bn_momentum=bn_momentum)
    for level in reversed(range(DEPTH)):
        f = base_filters * 2**level
        x = layers.Conv2DTranspose(f, 2, strides=2, padding="same", name=f"up{level + 1}")(x)
        x = layers.Concatenate(name=f"cat{level + 1}")([x, skips[level]])
        x = resnet_block(x, f, name=f"dec{level + 1}", bn_momentum=bn_momentum)
    # float32 output under a mixed (bf16) policy: the sigmoid and the loss stay in float32
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name=name)


def compile_model(model, learning_rate: float = 1e-3, weight_decay: float = 0.004,
                  threshold: float = 0.5, jit_compile="auto", run_eagerly: bool = False):
    """AdamW + 0.5 BCE + 0.5 (1 - Dice); thresholded and soft (paper) metrics.

    ``run_eagerly`` skips graph tracing: much slower per step on real data, but on a few tiny
    tiles (tests, debugging) tracing the deep graph costs far more than the steps themselves.
    """
    from crater_resunet.losses import bce_dice_loss
    from crater_resunet.metrics import keras_metrics

    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay),
        loss=bce_dice_loss,
        metrics=keras_metrics(threshold),
        jit_compile=False if run_eagerly else jit_compile,
        run_eagerly=run_eagerly,
    )
    return model


def save_model(model, path: str | os.PathLike) -> Path:
    """Save a ``.keras`` file atomically."""
    from shared.atomic import atomic_path

    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: model files must end in .keras")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def load_model(path: str | os.PathLike, compile: bool = True):
    """Load a ``.keras`` model in safe mode; our loss and metrics are registered on import.

    A model saved by the original notebook (its loss and metrics registered there as
    ``dice_bce_loss``, ``f1_score``, ``precision``, ``recall``, ``dice_coefficient``) loads
    with ``compile=False`` (what ``predict`` does) without those functions. Anything that is
    not a loadable model raises ``shared.keras_models.ModelFileError`` naming the file (the
    one safe ``.keras`` loader, shared with ice_patch_cnn).
    """
    import crater_resunet.losses  # noqa: F401  (registers the loss and the metrics)
    from shared.keras_models import load_keras_model

    return load_keras_model(path, "crater_resunet", "a crater_resunet model", compile=compile)


def count_params(model) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    total = sum(int(keras.ops.size(w)) for w in model.weights)
    return total, trainable


POLICIES = KERAS_POLICIES


def set_precision(precision: str | None, device: str = "cpu") -> str:
    """Set the Keras global dtype policy from ``--precision`` (auto, fp32, bf16): the one
    rule of both Keras subprojects, ``shared.keras_models.set_keras_precision`` (bf16 =
    ``mixed_bfloat16``: bf16 compute, float32 weights and output). Call before building a
    model; returns the resolved ``fp32`` or ``bf16``. (``device`` is kept for callers; the
    device is the one TensorFlow sees.)"""
    return set_keras_precision(precision)


def with_precision(model, precision: str | None):
    """``model`` for prediction in ``precision`` (auto, fp32, bf16): a ResNet-UNet saved in
    another precision is rebuilt under the wanted policy with the same weights (the graph is
    the same, only the compute dtype changes). Other models are returned as they are."""
    resolved = set_precision(precision)
    want = POLICIES[resolved]
    current = model.get_layer("enc1_conv1").dtype_policy.name \
        if any(layer.name == "enc1_conv1" for layer in model.layers) else None
    if current is None or current == want:
        return model
    base = int(model.get_layer("enc1_conv1").filters)
    bn = model.get_layer("enc1_bn1").momentum
    twin = build_resunet(tuple(model.input_shape[1:]), base, bn_momentum=float(bn))
    twin.set_weights(model.get_weights())
    return twin
