"""A toy architecture in one file: what a new architecture needs, and nothing more.

``tests/test_models.py`` registers it with one line, ``ARCHITECTURES["toy"] = ToyNet`` (through
``monkeypatch.setitem``), and then it is an ``--arch`` choice, a Train page option, loadable from
a checkpoint and run by every shared model test.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from core.models.base import SegmentationNet


class ToyNet(SegmentationNet):
    """Two levels: head 1 on one full-resolution conv, head 2 adds a half-resolution conv."""

    arch = "toy"
    display_name = "Toy net"

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_width: int = 8, depth: int = 2,
                 deep_supervision: bool = True) -> None:
        super().__init__()
        self.in_channels, self.num_classes, self.base_width = in_channels, num_classes, base_width
        self.depth, self.deep_supervision = depth, deep_supervision
        self.enc = nn.Conv2d(in_channels, base_width, 3, padding=1)
        if depth > 1:
            self.low = nn.Conv2d(base_width, base_width, 3, padding=1)
        self.add_heads(base_width)  # final1, final2 (or final): levels and head() follow

    def features(self, x: torch.Tensor, level: int) -> torch.Tensor:
        f = torch.relu(self.enc(x))
        if level > 1:
            f = f + F.interpolate(torch.relu(self.low(F.max_pool2d(f, 2))), size=f.shape[-2:])
        return f

    def forward(self, x: torch.Tensor, level: int | None = None) -> torch.Tensor | list[torch.Tensor]:
        wanted = self.levels if level is None else [level]
        outputs = [self.head(k)(self.features(x, k)) for k in wanted]
        return outputs if level is None and self.deep_supervision else outputs[0]

    def prune(self, level: int) -> "ToyNet":
        head = self.head(level)
        pruned = ToyNet(self.in_channels, self.num_classes, self.base_width, level, deep_supervision=False)
        own = self.state_dict()
        state = {k: own[k] for k in pruned.state_dict() if not k.startswith("final.")}
        pruned.load_state_dict(state | {f"final.{k}": v for k, v in head.state_dict().items()})
        return pruned.train(self.training)
