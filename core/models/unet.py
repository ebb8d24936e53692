"""U-Net baseline (Ronneberger et al. 2015) with the same blocks and widths as UNet++."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.models.base import SegmentationNet
from core.models.blocks import ConvBlock, concat, pad_to_multiple, seed_layout, widths


class UNet(SegmentationNet):
    """Plain U-Net: decoder node ``x{i}_{depth-i} = block(cat[x{i}_0, up(x{i+1}_{...})])``.

    Uses the same ``ConvBlock``, filter widths, pooling and up-sampling as ``NestedUNet``, so the
    two differ only in the skip pathways (a fair baseline). One head ``final``.

    Example:
        >>> UNet(base_width=8)(torch.zeros(1, 3, 40, 40)).shape
        torch.Size([1, 1, 40, 40])
    """

    arch = "unet"
    display_name = "U-Net"

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_width: int = 32, depth: int = 4) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base_width, self.depth = base_width, depth
        f = widths(base_width, depth)
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        for i in range(depth + 1):
            self.add_module(f"conv{i}_0", ConvBlock(in_channels if i == 0 else f[i - 1], f[i], f[i]))
        for i in range(depth):
            self.add_module(f"conv{i}_{depth - i}", ConvBlock(f[i] + f[i + 1], f[i], f[i]))
        self.add_heads(f[0])

    def forward(self, x: torch.Tensor, level: int | None = None) -> torch.Tensor:
        if level not in (None, self.depth):
            raise ValueError(f"U-Net has no pruning levels; only level {self.depth}")
        x, (h, w) = pad_to_multiple(x, 2**self.depth)
        skips = []
        for i in range(self.depth + 1):
            x = getattr(self, f"conv{i}_0")(x if i == 0 else self.pool(x))
            skips.append(x)
        for i in reversed(range(self.depth)):
            x = getattr(self, f"conv{i}_{self.depth - i}")(concat([skips[i], self.up(x)]))
        return self.final(x)[..., :h, :w]

    @classmethod
    def config_from_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
        layout = seed_layout(state)
        return None if layout is None else {k: v for k, v in layout.items() if k != "deep_supervision"}
