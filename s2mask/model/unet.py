"""The U-Net used by every s2mask model.

Four encoder levels and four decoder levels around a bottleneck, each a pair of
3x3 convolutions with BatchNorm and ReLU; max-pooling down, transposed
convolution up, skip connections by concatenation.  Input height and width need
not be multiples of 16: the decoder pads to the skip's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet"]


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = _DoubleConv(2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dy or dx:
            x = F.pad(x, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net with 4 levels.

    Args:
        in_channels: number of input bands.
        num_classes: number of output classes (logits, no softmax).
        width: channels of the first level; level ``i`` has ``width * 2**i``.
    """

    def __init__(self, in_channels: int, num_classes: int = 3, width: int = 16) -> None:
        super().__init__()
        w = [width * 2**i for i in range(5)]
        self.in_channels, self.num_classes, self.width = in_channels, num_classes, width
        self.inc = _DoubleConv(in_channels, w[0])
        self.downs = nn.ModuleList(_DoubleConv(w[i], w[i + 1]) for i in range(4))
        self.ups = nn.ModuleList(_Up(w[i + 1], w[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)
