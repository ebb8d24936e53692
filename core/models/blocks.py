"""Building blocks shared by the U-Net family."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ConvBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> ReLU.

    Attribute names (``conv1``, ``bn1``, ``conv2``, ``bn2``) follow the seed blog post's
    ``VGGBlock`` so that its state_dicts load unchanged.
    """

    def __init__(self, in_channels: int, middle_channels: int, out_channels: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, middle_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(middle_channels)
        self.conv2 = nn.Conv2d(middle_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class _ChannelConcat(torch.autograd.Function):
    """``torch.cat(tensors, 1)`` whose backward hands each input a dense gradient in the input's own layout.

    torch.cat's own backward returns channel slices of the output's gradient. In channels_last
    every such slice is strided, and on a CPU the kernels that consume it (the gradient sums of a
    node that feeds several concatenations, ``upsample_bilinear2d_backward``) then take slow paths:
    a UNet++ training step spends about a quarter of its time there (``bench/concat_grad.py``).
    """

    @staticmethod
    def forward(ctx: Any, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [t.shape[1] for t in tensors]
        ctx.layouts = [(t.dtype, torch.channels_last if t.dim() == 4 and not t.is_contiguous()
                        and t.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
                       for t in tensors]
        return torch.cat(tensors, 1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(g.to(dtype).contiguous(memory_format=layout) if needed else None
                     for g, (dtype, layout), needed in zip(grad.split(ctx.sizes, 1), ctx.layouts, ctx.needs_input_grad))


def concat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate feature maps along channels: ``torch.cat(tensors, 1)``, with a faster backward.

    Outside training (no gradient, or while ``torch.export`` traces the model) it is ``torch.cat``
    itself, so an exported graph holds a plain Concat.

    Example:
        >>> a, b = torch.ones(1, 2, 4, 4, requires_grad=True), torch.zeros(1, 3, 4, 4, requires_grad=True)
        >>> (concat([a, b]) * torch.arange(5.0).view(1, 5, 1, 1)).sum().backward()
        >>> a.grad[0, :, 0, 0].tolist(), b.grad[0, :, 0, 0].tolist()
        ([0.0, 1.0], [2.0, 3.0, 4.0])
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors) and not torch.compiler.is_compiling():
        return _ChannelConcat.apply(*tensors)
    return torch.cat(tensors, 1)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad H and W up to a multiple of ``multiple``; return the tensor and the original size.

    Pads even by zero, without a branch on the size, so that an exported graph (ONNX, torch.export)
    stays valid for every input size.

    Example:
        >>> x, size = pad_to_multiple(torch.zeros(1, 3, 50, 70), 16)
        >>> tuple(x.shape), size
        ((1, 3, 64, 80), (50, 70))
    """
    h, w = x.shape[-2:]
    x = nn.functional.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="replicate")
    return x, (h, w)


def widths(base_width: int, depth: int) -> list[int]:
    """Filter counts per resolution level: ``base_width * [1, 2, 4, ...]``.

    Example:
        >>> widths(4, 4)
        [4, 8, 16, 32, 64]
    """
    return [base_width * 2**i for i in range(depth + 1)]


def seed_layout(state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """Shapes of a state_dict named like the seed post's (``conv{i}_{j}``, ``final`` or ``final1..``).

    ``in_channels``, ``num_classes``, ``base_width``, ``depth`` and ``deep_supervision`` (one head
    per level), or None when it has no ``conv0_0``.
    """
    if "conv0_0.conv1.weight" not in state:
        return None
    first = state["conv0_0.conv1.weight"]
    depth = max(int(k.split("_")[0][4:]) for k in state if k.startswith("conv") and k.endswith("_0.conv1.weight"))
    deep = "final1.weight" in state
    head = state["final1.weight" if deep else "final.weight"]
    return {"in_channels": first.shape[1], "num_classes": head.shape[0], "base_width": first.shape[0],
            "depth": depth, "deep_supervision": deep}
