"""core.complexity: parameters, FLOPs and latency per pruning level, checked against hand counts."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.complexity import count_flops, count_parameters, level_module, measure_latency
from core.models import NestedUNet, UNet


class OneConv(nn.Module):
    """A one-layer "segmentation net" with the attributes the complexity functions read."""

    in_channels, num_classes, levels = 3, 2, [1]

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor, level: int | None = None) -> torch.Tensor:
        return self.conv(x)


def conv_block_params(cin: int, middle: int, out: int) -> int:
    """ConvBlock: two 3x3 convs with bias, each followed by batch norm (weight and bias)."""
    return cin * middle * 9 + middle + 2 * middle + middle * out * 9 + out + 2 * out


def test_flops_of_one_conv_counted_exactly() -> None:
    # 2 FLOPs per multiply-add: out channels x in channels x 3 x 3 per output pixel; bias not counted
    assert count_flops(OneConv(), 1, 8) == 2 * 2 * 3 * 9 * 8 * 8
    assert count_flops(OneConv(), 1, 16) == 4 * count_flops(OneConv(), 1, 8)


def test_parameters_of_a_model_without_prune_are_all_its_parameters() -> None:
    assert count_parameters(OneConv(), 1) == 3 * 2 * 9 + 2
    assert level_module(OneConv(), 1).__class__ is OneConv
    unet = UNet(base_width=4)
    assert count_parameters(unet, 4) == count_parameters(unet) == sum(p.numel() for p in unet.parameters())


def test_level_1_params_and_flops_match_a_hand_count() -> None:
    # L1 = x0_0 (3 -> 4), x1_0 (4 -> 8, at half resolution), x0_1 (cat 4 + 8 -> 4) and head final1 (4 -> 1)
    model = NestedUNet(base_width=4)
    params = conv_block_params(3, 4, 4) + conv_block_params(4, 8, 8) + conv_block_params(12, 4, 4) + 4 + 1
    assert count_parameters(model, 1) == params
    full, half = 32 * 32, 16 * 16
    flops = 2 * 9 * (full * (3 * 4 + 4 * 4) + half * (4 * 8 + 8 * 8) + full * (12 * 4 + 4 * 4)) + 2 * 4 * full
    assert count_flops(model.eval(), 1, 32) == flops


def test_params_and_flops_increase_with_level() -> None:
    model = NestedUNet(base_width=4).eval()
    params = [count_parameters(model, k) for k in model.levels]
    flops = [count_flops(model, k, 32) for k in model.levels]
    assert params == sorted(set(params)) and flops == sorted(set(flops))
    # the ensemble adds the three heads L4 does not use (4 weights + 1 bias each) and their FLOPs
    assert count_parameters(model, "ens") - params[-1] == 3 * (4 + 1)
    assert count_parameters(model, "ens") == sum(p.numel() for p in model.parameters())
    assert count_flops(model, "ens", 32) - flops[-1] == 3 * 2 * 4 * 32 * 32


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_pruned_model_has_exactly_the_counted_parameters_and_flops(level: int) -> None:
    model = NestedUNet(base_width=4).eval()
    pruned = model.prune(level)
    assert sum(p.numel() for p in pruned.parameters()) == count_parameters(model, level)
    assert count_parameters(pruned, level) == count_parameters(model, level)
    assert count_flops(pruned, level, 32) == count_flops(model, level, 32)


def test_level_module_prunes_below_the_deepest_head_only() -> None:
    model = NestedUNet(base_width=4)
    assert level_module(model, "ens") is model and level_module(model, 4) is model
    assert isinstance(level_module(model, 2), NestedUNet) and level_module(model, 2).depth == 2
    single = NestedUNet(base_width=4, deep_supervision=False)
    assert count_parameters(single, 4) == sum(p.numel() for p in single.parameters())


def test_latency_is_a_positive_time_per_image() -> None:
    model = NestedUNet(base_width=4).eval()
    ms = measure_latency(model, 1, 32, batch=2, repeats=2, warmup=1)
    assert isinstance(ms, float) and 0 < ms < 10_000
