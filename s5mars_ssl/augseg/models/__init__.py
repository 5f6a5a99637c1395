"""DeepLabv3+ on a deep-stem ResNet-50 (the S5Mars / AugSeg segmentation network)."""

from s5mars_ssl.augseg.models.decoder import ASPP, DeepLabV3PlusDecoder
from s5mars_ssl.augseg.models.model_helper import DeepLabV3Plus, load_pretrained_encoder
from s5mars_ssl.augseg.models.resnet import Bottleneck, ResNet50c

__all__ = ["ASPP", "Bottleneck", "DeepLabV3Plus", "DeepLabV3PlusDecoder", "ResNet50c",
           "load_pretrained_encoder"]
