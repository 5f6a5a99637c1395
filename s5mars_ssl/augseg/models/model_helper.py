"""The full segmentation network and loading of an ImageNet ResNet-50 into its encoder."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from s5mars_ssl.augseg.models.decoder import DeepLabV3PlusDecoder
from s5mars_ssl.augseg.models.resnet import ResNet50c


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


class PretrainedLoadError(ValueError):
    """The file given as an ImageNet encoder is missing or is not a ResNet state dict."""


def load_pretrained_encoder(model: DeepLabV3Plus, path: str | os.PathLike,
                            verbose: bool = True) -> tuple[list[str], list[str]]:
    """Load an ImageNet ResNet-50(c) state dict into ``model.encoder`` (non-strict).

    Accepts a plain state dict or one wrapped under ``state_dict``/``model``; a ``module.``
    prefix is stripped; the classifier (``fc.*``) is dropped. Tensors whose shape differs from
    the encoder's are reported as missing. Returns ``(missing, unexpected)`` key lists; raises
    :class:`PretrainedLoadError` naming the file when it holds no tensor dictionary.
    """
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
    state = {}
    for k, v in obj.items():
        k = k.removeprefix("module.").removeprefix("encoder.").removeprefix("backbone.")
        if k.startswith("fc."):
            continue
        state[k] = v
    own = model.encoder.state_dict()
    shape_bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for k in shape_bad:
        state.pop(k)
    result = model.encoder.load_state_dict(state, strict=False)
    missing = sorted(set(result.missing_keys) | set(shape_bad))
    unexpected = sorted(result.unexpected_keys)
    if len(missing) == len(own):
        raise PretrainedLoadError(f"{path}: no key matches the ResNet-50c encoder "
                                  f"(e.g. {next(iter(state), '?')!r})")
    if verbose:
        print(f"pretrained encoder {path}: loaded {len(own) - len(missing)}/{len(own)} tensors, "
              f"missing {len(missing)}, unexpected {len(unexpected)}")
        if missing:
            print("  missing:", ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
        if unexpected:
            print("  unexpected:", ", ".join(unexpected[:20])
                  + (" ..." if len(unexpected) > 20 else ""))
    return missing, unexpected
