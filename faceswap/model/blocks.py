"""The few layers every preset is built from."""

from __future__ import annotations

import torch
from torch import nn

LEAK = 0.1  # LeakyReLU slope of the classic deepfakes model


class ConvAct(nn.Sequential):
    """`k`x`k` conv ('same' padding, optional stride) + LeakyReLU: `(B, cin, H, W) -> (B, cout, H/stride, W/stride)`."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2), nn.LeakyReLU(LEAK, inplace=True))


class Upscale(nn.Sequential):
    """2x upsampling: 3x3 conv to 4x channels + LeakyReLU + pixel shuffle: `(B, cin, H, W) -> (B, cout, 2H, 2W)`.

    Pixel shuffle instead of a transposed conv: no checkerboard artifacts.
    """

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__(
            nn.Conv2d(cin, cout * 4, k, padding=k // 2), nn.LeakyReLU(LEAK, inplace=True), nn.PixelShuffle(2)
        )


class ResBlock(nn.Module):
    """Two 3x3 convs with a skip: `(B, C, H, W) -> (B, C, H, W)`. Adds detail at a fixed resolution cheaply."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        return self.act(x + y)
