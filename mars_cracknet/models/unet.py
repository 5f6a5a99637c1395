"""UNet baseline with bilinear upsampling (13,395,329 parameters for one class).

inc double_conv(3->64); four downs (max-pool + double_conv) 64->128->256->512->512; four ups
(bilinear x2, concatenation, double_conv) 1024->256, 512->128, 256->64, 128->64; 1x1 head.
``forward`` returns logits. ``width`` scales every channel count (64 = the paper's baseline;
the tests use 8 to stay fast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = double_conv(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.max_pool2d(x, 2))


class Up(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = double_conv(cin, cout)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.conv(torch.cat([skip, up], dim=1))


class UNet(nn.Module):
    def __init__(self, num_classes: int = 1, in_channels: int = 3, width: int = 64):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.num_classes, self.width = num_classes, width
        w = width
        self.inc = double_conv(in_channels, w)
        self.down1, self.down2 = Down(w, 2 * w), Down(2 * w, 4 * w)
        self.down3, self.down4 = Down(4 * w, 8 * w), Down(8 * w, 8 * w)
        self.up1, self.up2 = Up(16 * w, 4 * w), Up(8 * w, 2 * w)
        self.up3, self.up4 = Up(4 * w, w), Up(2 * w, w)
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.head(x)


# --------------------------------------------------------------------------- original layout
_ORIGINAL_RULES = [
    (r"inc\.conv\.conv\.", lambda m: "inc."),
    (r"down([1-4])\.mpconv\.1\.conv\.", lambda m: f"down{m[1]}.conv."),
    (r"up([1-4])\.conv\.conv\.", lambda m: f"up{m[1]}.conv."),
    (r"outc\.conv\.", lambda m: "head."),
]


def checkpoint_filter_fn(state: dict[str, torch.Tensor]
                         ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The original ``UNet`` state dict (``module.`` stripped) -> :class:`UNet` keys (timm's
    ``checkpoint_filter_fn`` pattern): ``(renamed, keys no rule knows)``; the caller refuses
    unknown keys and checks the result strictly."""
    from mars_cracknet.models.resunet import rename_state

    return rename_state(state, _ORIGINAL_RULES)
