"""ResNet-50c: ResNet-50 with a three-convolution deep stem, output stride 16 and multi-grid.

The stem is conv3x3(3->64, stride 2)+BN+ReLU, conv3x3(64->64)+BN+ReLU, conv3x3(64->128)+BN+ReLU
and a 3x3/2 max-pool with ``ceil_mode``; the four bottleneck stages [3, 4, 6, 3] start from 128
input planes. For output stride 16 the last stage keeps stride 1 and dilates instead. Multi-grid
on that stage: the first block uses ``previous_dilation * grid[0]`` and block ``i > 0`` uses
``dilation * grid[i]`` with grid (2, 2, 4), i.e. dilations 2, 4, 8 at output stride 16.
"""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided / dilated), 1x1 expand (x4) with a residual connection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1,
                 norm_layer: type[nn.Module] = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50c(nn.Module):
    """Encoder returning the layer1 (stride 4, 256 ch) and layer4 (stride 16, 2048 ch) features."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3),
                 replace_stride_with_dilation: tuple[bool, bool, bool] = (False, False, True),
                 multi_grid: bool = True, grid: tuple[int, ...] = (2, 2, 4),
                 zero_init_residual: bool = True,
                 norm_layer: type[nn.Module] = nn.BatchNorm2d):
        super().__init__()
        self._norm = norm_layer
        self.inplanes = 128
        self.dilation = 1
        self.conv1 = conv3x3(3, 64, stride=2)
        self.bn1 = norm_layer(64)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(64, 64)
        self.bn2 = norm_layer(64)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv3x3(64, 128)
        self.bn3 = norm_layer(128)
        self.relu3 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2,
                                       dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(256, layers[2], stride=2,
                                       dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(512, layers[3], stride=2,
                                       dilate=replace_stride_with_dilation[2],
                                       grid=grid if multi_grid else None)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False,
                    grid: tuple[int, ...] | None = None) -> nn.Sequential:
        norm = self._norm
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        grids = list(grid) if grid is not None else [1] * blocks
        if len(grids) < blocks:
            raise ValueError(f"multi-grid {grids} has fewer entries than the {blocks} blocks")
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride,
                          bias=False),
                norm(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample,
                             dilation=previous_dilation * grids[0], norm_layer=norm)]
        self.inplanes = planes * Bottleneck.expansion
        for i in range(1, blocks):
            layers.append(Bottleneck(self.inplanes, planes, dilation=self.dilation * grids[i],
                                     norm_layer=norm))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return c1, c4


# --------------------------------------------------------------------------- original layout
# The original (AugSeg) deep stem is one Sequential ``conv1.{0,1,3,4,6}`` + ``bn1``; ours names
# the three convolutions and their norms. Layers keep their names.
_ORIGINAL_STEM = {"conv1.0.": "conv1.", "conv1.1.": "bn1.", "conv1.3.": "conv2.",
                  "conv1.4.": "bn2.", "conv1.6.": "conv3.", "bn1.": "bn3."}


def original_encoder_key(key: str) -> str:
    """An AugSeg ResNet-50c key (no ``encoder.`` prefix) -> ours (unknown keys unchanged)."""
    if key.startswith("layer"):
        return key
    for old, new in _ORIGINAL_STEM.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def encoder_filter_fn(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ImageNet ResNet-50(c) state dict -> :class:`ResNet50c` keys (timm's
    ``checkpoint_filter_fn`` pattern): ``module.``/``encoder.``/``backbone.`` prefixes
    stripped, the classifier (``fc.*``) dropped, the AugSeg deep stem renamed when present."""
    deep_stem = any(k.endswith("conv1.0.weight") and "layer" not in k for k in state)
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.").removeprefix("encoder.").removeprefix("backbone.")
        if k.startswith("fc."):
            continue
        out[original_encoder_key(k) if deep_stem else k] = v
    return out
