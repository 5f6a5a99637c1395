"""The full segmentation network and loading of an ImageNet ResNet-50 into its encoder."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from s5mars_ssl.augseg.models.decoder import DeepLabV3PlusDecoder
from s5mars_ssl.augseg.models.resnet import ResNet50c
from shared.runs import UserError


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ / ResNet-50c, output stride 16; logits at the input resolution.

    With ``num_classes=9`` it has exactly 40,472,921 parameters (encoder 23,631,808, decoder
    16,841,113). ``sync_bn=True`` builds it with ``nn.SyncBatchNorm`` (multi-GPU CUDA only).
    """

    def __init__(self, num_classes: int = 9, sync_bn: bool = False, multi_grid: bool = True):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        norm = nn.SyncBatchNorm if sync_bn else nn.BatchNorm2d
        self.num_classes = num_classes
        self.encoder = ResNet50c(multi_grid=multi_grid, norm_layer=norm)
        self.decoder = DeepLabV3PlusDecoder(num_classes, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c4 = self.encoder(x)
        logits = self.decoder(c1, c4)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class PretrainedLoadError(UserError):
    """The file given as an ImageNet encoder is missing or is not a ResNet state dict."""


def load_pretrained_encoder(model: DeepLabV3Plus, path: str | os.PathLike,
                            verbose: bool = True) -> int:
    """Load an ImageNet ResNet-50c state dict into ``model.encoder``, strictly.

    Accepts the AugSeg ``pretrain/resnet50.pth`` layout (deep stem ``conv1.{0,1,3,4,6}`` +
    ``bn1``, mapped onto ours), our own encoder names, a plain state dict or one wrapped under
    ``state_dict``/``model``; a ``module.``/``encoder.``/``backbone.`` prefix is stripped and the
    classifier (``fc.*``) ignored. Every one of the encoder's tensors must be placed with its
    shape, else :class:`PretrainedLoadError` names the missing / unexpected / mis-shaped keys.
    Returns the number of tensors loaded.
    """
    from s5mars_ssl.checkpoint import CheckpointError, check_state, original_encoder_key

    path = Path(path)
    if not path.is_file():
        raise PretrainedLoadError(f"{path}: pretrained encoder file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise PretrainedLoadError(f"{path}: not a readable weights file ({exc})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise PretrainedLoadError(f"{path}: not a state dict (expected a mapping of parameter "
                                  "names to tensors)")
    deep_stem = any(k.endswith("conv1.0.weight") and "layer" not in k for k in obj)
    state = {}
    for k, v in obj.items():
        k = k.removeprefix("module.").removeprefix("encoder.").removeprefix("backbone.")
        if k.startswith("fc."):
            continue
        state[original_encoder_key(k) if deep_stem else k] = v
    own = model.encoder.state_dict()
    try:
        check_state(state, own, path, what="ResNet-50c encoder")
    except CheckpointError as exc:
        raise PretrainedLoadError(str(exc)) from None
    model.encoder.load_state_dict(state, strict=True)
    if verbose:
        print(f"pretrained encoder {path}: loaded {len(own)}/{len(own)} tensors")
    return len(own)
