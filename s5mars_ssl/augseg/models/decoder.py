"""DeepLabv3+ decoder: ASPP (image pooling, 1x1, 3x3 at rates 6/12/18) and a low-level fusion."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cbr(cin: int, cout: int, k: int, dilation: int = 1, norm=nn.BatchNorm2d) -> nn.Sequential:
    pad = 0 if k == 1 else dilation
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         norm(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Five parallel branches of ``inner`` channels, concatenated (5 * inner channels out)."""

    def __init__(self, in_planes: int = 2048, inner: int = 256,
                 dilations: tuple[int, int, int] = (6, 12, 18), norm=nn.BatchNorm2d):
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _cbr(in_planes, inner, 1, norm=norm))
        self.conv1 = _cbr(in_planes, inner, 1, norm=norm)
        self.atrous = nn.ModuleList(_cbr(in_planes, inner, 3, d, norm=norm) for d in dilations)
        self.out_planes = inner * (2 + len(dilations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled = F.interpolate(self.pool(x), size=(h, w), mode="bilinear", align_corners=True)
        return torch.cat([pooled, self.conv1(x), *(b(x) for b in self.atrous)], dim=1)


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the stride-16 features, fused with 48 low-level channels from layer1."""

    def __init__(self, num_classes: int, in_planes: int = 2048, low_planes: int = 256,
                 low_out: int = 48, inner: int = 256,
                 dilations: tuple[int, int, int] = (6, 12, 18), norm=nn.BatchNorm2d):
        super().__init__()
        self.low_conv = nn.Sequential(nn.Conv2d(low_planes, low_out, 1), norm(low_out),
                                      nn.ReLU(inplace=True))
        self.aspp = ASPP(in_planes, inner, dilations, norm=norm)
        self.head = _cbr(self.aspp.out_planes, 256, 1, norm=norm)
        self.classifier = nn.Sequential(
            _cbr(256 + low_out, 256, 3, norm=norm),
            _cbr(256, 256, 3, norm=norm),
            nn.Conv2d(256, num_classes, 1, bias=True),
        )

    def forward(self, c1: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:
        low = self.low_conv(c1)
        x = self.head(self.aspp(c4))
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=True)
        return self.classifier(torch.cat([x, low], dim=1))
