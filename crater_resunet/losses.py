"""The training loss: 0.5 binary cross-entropy + 0.5 (1 - soft Dice, smooth 1), as in the
notebook. Registered (package ``crater_resunet``) so saved models load in safe mode."""

from __future__ import annotations

import keras
from keras import ops

from crater_resunet.metrics import PACKAGE, dice_coefficient


@keras.saving.register_keras_serializable(package=PACKAGE)
def bce_dice_loss(y_true, y_pred):
    """0.5 * binary cross-entropy + 0.5 * (1 - soft Dice)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
    return 0.5 * bce + 0.5 * (1.0 - dice_coefficient(y_true, y_pred))
