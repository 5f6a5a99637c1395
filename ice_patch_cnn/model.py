"""The small Xception-style classifier of the paper (Keras 3, any backend).

It follows the "image classification from scratch" network of the Keras examples that the paper
cites: a strided entry convolution, three residual blocks of separable convolutions (256, 512,
728 filters) that halve the resolution, a 1024-filter separable convolution, global average
pooling, dropout and one sigmoid unit. Batch normalisation comes before every ReLU. For a
(1024, 1024, 1) input it has 2,728,761 parameters (the count does not depend on the image size,
only on the number of input channels).
"""

from __future__ import annotations

from collections.abc import Sequence

ENTRY_FILTERS = 128
BLOCK_FILTERS = (256, 512, 728)
EXIT_FILTERS = 1024


def build_xception(
    input_shape: Sequence[int] = (1024, 1024, 1),
    dropout: float = 0.5,
    width_scale: float = 1.0,
    name: str = "ice_xception",
    bn_momentum: float = 0.99,
):
    """Build the classifier; output is P(small ice patch in the chunk), shape (batch, 1).

    ``input_shape`` is (height, width, channels) of uint8-range pixels (the model rescales by
    1/255 itself). ``width_scale`` multiplies every filter count (1.0 is the paper's network; it
    exists only for experiments on small machines). ``bn_momentum`` is the batch-normalisation
    moving-average momentum (Keras default 0.99; a short CPU run needs a faster one, e.g. 0.9,
    for its inference statistics to settle within a few hundred steps).
    """
    import keras
    from keras import layers

    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if not 0.0 < bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must be in (0, 1), got {bn_momentum}")
    if width_scale <= 0:
        raise ValueError(f"width_scale must be positive, got {width_scale}")

    def w(n: int) -> int:
        return max(1, int(round(n * width_scale)))

    inputs = keras.Input(shape=tuple(int(v) for v in input_shape), name="chunk")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Conv2D(w(ENTRY_FILTERS), 3, strides=2, padding="same", name="entry_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name="entry_bn")(x)
    x = layers.Activation("relu", name="entry_relu")(x)
    shortcut_source = x
    for i, size in enumerate(BLOCK_FILTERS, start=1):
        x = layers.Activation("relu", name=f"b{i}_relu1")(x)
        x = layers.SeparableConv2D(w(size), 3, padding="same", name=f"b{i}_sep1")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"b{i}_bn1")(x)
        x = layers.Activation("relu", name=f"b{i}_relu2")(x)
        x = layers.SeparableConv2D(w(size), 3, padding="same", name=f"b{i}_sep2")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"b{i}_bn2")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"b{i}_pool")(x)
        residual = layers.Conv2D(w(size), 1, strides=2, padding="same",
                                 name=f"b{i}_residual")(shortcut_source)
        x = layers.add([x, residual], name=f"b{i}_add")
        shortcut_source = x
    x = layers.SeparableConv2D(w(EXIT_FILTERS), 3, padding="same", name="exit_sep")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name="exit_bn")(x)
    x = layers.Activation("relu", name="exit_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    # float32 output under a mixed (bf16) policy: the sigmoid and the loss stay in float32
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_ice")(x)
    return keras.Model(inputs, outputs, name=name)


def load_model(path, compile: bool = False):
    """Load a saved ``.keras`` classifier in safe mode (no arbitrary code is deserialised;
    ``shared.keras_models``, the one safe loader, shared with crater_resunet): a missing,
    truncated or foreign file, or a model of another subproject, is one line naming it.

    ``compile=True`` also restores the optimizer and its state (to resume training).
    """
    from shared.keras_models import load_keras_model

    return load_keras_model(path, "ice_patch_cnn", "an ice_patch_cnn chunk classifier",
                            compile=compile)


def compile_model(model, learning_rate: float = 1e-3):
    """Binary cross-entropy and Adam, with accuracy, as in the paper."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=float(learning_rate)),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    return model


def model_from_config(cfg: dict, chunk_size: int | None = None):
    """The classifier of a profile (``model:`` section) for square chunks of ``chunk_size``."""
    size = int(chunk_size or cfg["data"]["chunk_size"])
    mcfg = cfg["model"]
    return build_xception((size, size, int(mcfg.get("channels", 1))),
                          dropout=float(mcfg.get("dropout", 0.5)),
                          width_scale=float(mcfg.get("width_scale", 1.0)),
                          bn_momentum=float(mcfg.get("bn_momentum", 0.99)))


def set_threads(threads: int) -> None:
    """Cap the framework's CPU threads (TensorFlow: intra-op ``threads``, inter-op <= 2)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(min(2, int(threads)))
        except RuntimeError:
            pass  # TensorFlow already ran something in this process: keep its setting
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(int(threads))
