"""Parameters, FLOPs and measured latency per pruning level."""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.inference import predict_level
from core.levels import ENSEMBLE, Level, is_deepest, is_ensemble
from core.runtime import memory_format


def level_module(model: nn.Module, level: Level) -> nn.Module:
    """The standalone network that computes ``level`` (the whole model for the ensemble).

    Example:
        >>> from core.models import NestedUNet
        >>> model = NestedUNet(base_width=4)
        >>> level_module(model, 2).depth, level_module(model, 4) is model, level_module(model, ENSEMBLE) is model
        (2, True, True)
    """
    if is_ensemble(level) or is_deepest(model, level):
        return model
    return model.prune(level)


def count_parameters(model: nn.Module, level: Level = ENSEMBLE) -> int:
    """Parameters used at ``level`` (heads not used at that level excluded).

    Example:
        >>> from core.models import NestedUNet
        >>> model = NestedUNet(base_width=4)
        >>> [count_parameters(model, k) for k in model.levels], count_parameters(model, ENSEMBLE)
        ([1793, 8441, 35585, 144473], 144488)
        >>> count_parameters(model, 2) == sum(p.numel() for p in model.prune(2).parameters())
        True
    """
    module = level_module(model, level)
    total = sum(p.numel() for p in module.parameters())
    if module is model and not is_ensemble(level) and getattr(model, "deep_supervision", False):
        unused = [model.head(k) for k in model.levels if k != level]
        total -= sum(p.numel() for head in unused for p in head.parameters())
    return total


@torch.no_grad()
def count_flops(model: nn.Module, level: Level, size: int) -> int:
    """Floating-point operations (2 x multiply-adds) of one ``size x size`` image at ``level``.

    Counted by ``torch.utils.flop_counter`` (convolutions; bias, batch norm and up-sampling are
    not counted).

    Example:
        >>> from core.models import NestedUNet
        >>> model = NestedUNet(base_width=4).eval()
        >>> count_flops(model, 1, 32), count_flops(model, 4, 32)
        (2146304, 17039360)
    """
    x = torch.zeros(1, model.in_channels, size, size, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        if is_ensemble(level):
            model(x)
        else:
            model(x, level=level)
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latency(
    model: nn.Module, level: Level, size: int, batch: int = 1, dtype: torch.dtype | None = None,
    repeats: int = 10, warmup: int = 2,
) -> float:
    """Median milliseconds per image for a forward pass at ``level`` (only its nodes computed).

    Example:
        >>> from core.models import NestedUNet
        >>> measure_latency(NestedUNet(base_width=4).eval(), 1, 32, repeats=2, warmup=1) > 0
        True
    """
    device = next(model.parameters()).device
    x = torch.randn(batch, model.in_channels, size, size, device=device).contiguous(memory_format=memory_format(device))
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        predict_level(model, x, level, dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000 / batch
