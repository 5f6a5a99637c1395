"""Segmentation networks: Mars-CrackNet's ResUNet and the UNet baseline."""

from mars_cracknet.models.resunet import ResUNet
from mars_cracknet.models.unet import UNet

MODELS = {"resunet": ResUNet, "unet": UNet}


def build_model(name: str, num_classes: int = 1, width: int = 64):
    """Build a model by its CLI name (``resunet`` or ``unet``).

    ``width`` is the base channel count of the UNet (64 in the paper); ResUNet's widths are
    fixed by its ResNet-18 encoder, so it accepts only 64.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    if name == "unet":
        return UNet(num_classes=num_classes, width=int(width))
    if int(width) != 64:
        raise ValueError(f"model {name!r} has the fixed ResNet-18 widths; width must be 64, "
                         f"got {width}")
    return MODELS[name](num_classes=num_classes)


__all__ = ["MODELS", "ResUNet", "UNet", "build_model"]
