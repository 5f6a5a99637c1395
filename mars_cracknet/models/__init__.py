"""Segmentation networks: Mars-CrackNet's ResUNet and the UNet baseline."""

from mars_cracknet.models.resunet import ResUNet
from mars_cracknet.models.unet import UNet

MODELS = {"resunet": ResUNet, "unet": UNet}


def build_model(name: str, num_classes: int = 1):
    """Build a model by its CLI name (``resunet`` or ``unet``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](num_classes=num_classes)


__all__ = ["MODELS", "ResUNet", "UNet", "build_model"]
