"""Mars-CrackNet (``Res_UNet`` of the paper): a ResNet-18 encoder U-Net with residual decoders.

Structure (as the original code of Xu et al., "Deciphering Mars Intermediate-Sized Cracks with
Deep Learning", JGR Planets, ``models/resunet.py``): a full-resolution two-conv branch, the
torchvision ResNet-18 stem (7x7/2 conv, BN, ReLU; the max-pool is not used) and its four
stages, a dilated residual bottleneck, four residual decoder blocks that upsample bilinearly
(``align_corners=True``) and concatenate (skip, upsampled) as the original, and a final 1x1
convolution. ``forward`` returns logits; apply ``torch.sigmoid`` for probabilities.
With ``num_classes=1`` the network has exactly 21,545,153 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18


def conv_bn(cin: int, cout: int, dilation: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=True),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """[conv3x3+BN+ReLU, conv3x3+BN] plus a shortcut (identity or conv3x3+BN), then ReLU."""

    def __init__(self, cin: int, cout: int, dilation: int = 1, identity_skip: bool = False):
        super().__init__()
        if identity_skip and cin != cout:
            raise ValueError("an identity shortcut needs cin == cout")
        self.body = nn.Sequential(conv_bn(cin, cout, dilation), conv_bn(cout, cout, relu=False))
        self.shortcut = nn.Identity() if identity_skip else conv_bn(cin, cout, relu=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class DecoderBlock(nn.Module):
    """Bilinear x2 upsampling of the deeper map, concatenation (skip, upsampled) in the
    original's order, residual block."""

    def __init__(self, cin_deep: int, cin_skip: int, cout: int):
        super().__init__()
        self.block = ResidualBlock(cin_deep + cin_skip, cout)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.block(torch.cat([skip, up], dim=1))  # (skip, upsampled), as the original


class ResUNet(nn.Module):
    """Mars-CrackNet. Input (N, 3, H, W) in [0, 1]; H and W multiples of 32 keep the size."""

    def __init__(self, num_classes: int = 1, in_channels: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.width = 64  # fixed by the ResNet-18 encoder
        self.full_res = nn.Sequential(conv_bn(in_channels, 64), conv_bn(64, 64, relu=False))
        backbone = resnet18(weights=None)  # no download: weights come from our own checkpoints
        if in_channels != 3:
            backbone.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu)
        self.layer1, self.layer2 = backbone.layer1, backbone.layer2
        self.layer3, self.layer4 = backbone.layer3, backbone.layer4
        self.bottleneck = ResidualBlock(512, 512, dilation=2, identity_skip=True)
        self.dec4 = DecoderBlock(512, 256, 256)
        self.dec3 = DecoderBlock(256, 128, 128)
        self.dec2 = DecoderBlock(128, 64, 64)
        self.dec1 = DecoderBlock(64, 64, 64)
        self.head = nn.Conv2d(64, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = self.full_res(x)
        e1 = self.layer1(self.stem(x))  # /2
        e2 = self.layer2(e1)  # /4
        e3 = self.layer3(e2)  # /8
        b = self.bottleneck(self.layer4(e3))  # /16
        d = self.dec4(b, e3)
        d = self.dec3(d, e2)
        d = self.dec2(d, e1)
        d = self.dec1(d, full)
        return self.head(d)


# --------------------------------------------------------------------------- original layout
# The original Res_UNet's names -> ours (no tensor changes: both concatenate in the original's
# order). Each rule: a pattern at the start of the key and the replacement of what it matched.
_ORIGINAL_RULES = [
    (r"conv_original_size0\.([01])\.", lambda m: f"full_res.0.{m[1]}."),
    (r"conv_original_size0\.([34])\.", lambda m: f"full_res.1.{int(m[1]) - 3}."),
    (r"firstconv\.", lambda m: "stem.0."),
    (r"firstbn\.", lambda m: "stem.1."),
    (r"encoder([1-4])\.", lambda m: f"layer{m[1]}."),
    (r"block4\.0\.conv\.([01])\.", lambda m: f"bottleneck.body.0.{m[1]}."),
    (r"block4\.0\.conv\.([34])\.", lambda m: f"bottleneck.body.1.{int(m[1]) - 3}."),
    (r"decoder([1-4])\.conv\.([01])\.", lambda m: f"dec{5 - int(m[1])}.block.body.0.{m[2]}."),
    (r"decoder([1-4])\.conv\.([34])\.",
     lambda m: f"dec{5 - int(m[1])}.block.body.1.{int(m[2]) - 3}."),
    (r"decoder([1-4])\.skip\.([01])\.", lambda m: f"dec{5 - int(m[1])}.block.shortcut.{m[2]}."),
    (r"final\.", lambda m: "head."),
]


def rename_by_rules(key: str, rules) -> str | None:
    """``key`` renamed by the first matching rule, or None when no rule matches."""
    import re

    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            return repl(m) + key[m.end():]
    return None


def rename_state(state: dict, rules) -> tuple[dict, list[str]]:
    """``(renamed state dict, keys no rule knows)``: every key through :func:`rename_by_rules`."""
    out, unknown = {}, []
    for key, value in state.items():
        new = rename_by_rules(key, rules)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    return out, unknown


def checkpoint_filter_fn(state: dict[str, torch.Tensor]
                         ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The original ``Res_UNet`` state dict (``module.`` stripped) -> :class:`ResUNet` keys
    (timm's ``checkpoint_filter_fn`` pattern): ``(renamed, keys no rule knows)``; the caller
    refuses unknown keys and checks the result strictly."""
    return rename_state(state, _ORIGINAL_RULES)
