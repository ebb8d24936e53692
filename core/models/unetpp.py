"""UNet++ (nested U-Net; Zhou et al., DLMIA 2018 / IEEE TMI 2019) with deep supervision and pruning."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.models.base import SegmentationNet
from core.models.blocks import ConvBlock, concat, pad_to_multiple, seed_layout, widths


class NestedUNet(SegmentationNet):
    """UNet++: node ``x{i}_{j} = block(cat[x{i}_0..x{i}_{j-1}, up(x{i+1}_{j-1})])``.

    Args:
        in_channels: image channels.
        num_classes: 1 for binary segmentation (sigmoid), >1 for softmax over classes.
        base_width: filters of the first level; level ``i`` has ``base_width * 2**i``.
        deep_supervision: 1x1 heads ``final1..final{depth}`` on ``x0_1..x0_{depth}``;
            otherwise a single head ``final`` on ``x0_{depth}``.
        depth: number of down-samplings (4 in the paper). A model pruned to level ``k`` is a
            ``NestedUNet`` of depth ``k``.
        pad_multiple: H and W are padded to a multiple of this (default ``2**depth``); a pruned
            model keeps its parent's value so that its output matches the parent's head exactly.

    ``forward(x)`` returns the list of head logits (deep supervision) or one logits tensor;
    ``forward(x, level=k)`` computes only the nodes head ``x0_k`` needs and returns its logits.
    Inputs of any size work: H and W are padded to ``pad_multiple`` and the output cropped back.

    Example:
        >>> model = NestedUNet(base_width=8).eval()
        >>> [o.shape[-1] for o in model(torch.zeros(1, 3, 50, 70))]
        [70, 70, 70, 70]
        >>> model(torch.zeros(1, 3, 64, 64), level=2).shape
        torch.Size([1, 1, 64, 64])
    """

    arch = "unetpp"
    display_name = "UNet++"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_width: int = 32,
        deep_supervision: bool = True,
        depth: int = 4,
        pad_multiple: int | None = None,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base_width, self.deep_supervision, self.depth = base_width, deep_supervision, depth
        self.pad_multiple = pad_multiple or 2**depth
        if self.pad_multiple % 2**depth:
            raise ValueError(f"pad_multiple must be a multiple of 2**depth={2**depth}")
        f = widths(base_width, depth)
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        for i in range(depth + 1):
            for j in range(depth + 1 - i):
                cin = in_channels if (i, j) == (0, 0) else (f[i - 1] if j == 0 else f[i] * j + f[i + 1])
                self.add_module(f"conv{i}_{j}", ConvBlock(cin, f[i], f[i]))
        self.add_heads(f[0])  # head k on x0_k

    @classmethod
    def config_from_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
        """A seed-post state_dict with nested nodes (U-Net's decoder nodes are ``conv{i}_{depth-i}``:
        it has ``conv0_1`` only at depth 1, where the two networks coincide)."""
        layout = seed_layout(state)
        return layout if layout is not None and "conv0_1.conv1.weight" in state else None

    def forward(self, x: torch.Tensor, level: int | None = None) -> torch.Tensor | list[torch.Tensor]:
        x, (h, w) = pad_to_multiple(x, self.pad_multiple)
        wanted = self.levels if level is None else [level]
        for k in wanted:
            self.head(k)  # validates the level
        top = max(wanted)
        nodes: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(top + 1):  # encoder column x{i}_0
            nodes[i, 0] = getattr(self, f"conv{i}_0")(x if i == 0 else self.pool(nodes[i - 1, 0]))
        for j in range(1, top + 1):  # one diagonal of nested nodes per level
            for i in range(top + 1 - j):
                inputs = [nodes[i, k] for k in range(j)] + [self.up(nodes[i + 1, j - 1])]
                nodes[i, j] = getattr(self, f"conv{i}_{j}")(concat(inputs))
        outputs = [self.head(k)(nodes[0, k])[..., :h, :w] for k in wanted]
        if level is not None or not self.deep_supervision:
            return outputs[0]
        return outputs

    def prune(self, level: int) -> "NestedUNet":
        """A standalone model holding only the parameters head ``x0_{level}`` uses.

        Its output equals ``self(x, level=level)``.

        Example:
            >>> model = NestedUNet(base_width=4).eval()
            >>> pruned = model.prune(2)
            >>> pruned.depth, pruned.levels, pruned.deep_supervision
            (2, [2], False)
            >>> x = torch.rand(1, 3, 32, 32)
            >>> torch.allclose(pruned(x), model(x, level=2), atol=1e-6)
            True
        """
        head = self.head(level)
        pruned = NestedUNet(self.in_channels, self.num_classes, self.base_width, False, level, self.pad_multiple)
        own = self.state_dict()
        state = {k: own[k] for k in pruned.state_dict() if not k.startswith("final.")}
        state.update({f"final.{k}": v for k, v in head.state_dict().items()})
        pruned.load_state_dict(state)
        return pruned.to(next(self.parameters()).device).train(self.training)
