"""Every architecture: parameter counts, any resolution, multi-class, channels; UNet++ pruning."""
from __future__ import annotations

import pytest
import torch

from core.models import NestedUNet, UNet, build_model, model_config

ARCHS = [
    pytest.param(lambda **kw: NestedUNet(base_width=4, **kw), id="unetpp-ds"),
    pytest.param(lambda **kw: NestedUNet(base_width=4, deep_supervision=False, **kw), id="unetpp"),
    pytest.param(lambda **kw: UNet(base_width=4, **kw), id="unet"),
]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (NestedUNet(base_width=32, deep_supervision=False), 9_163_329),
        (NestedUNet(base_width=32, deep_supervision=True), 9_163_428),
        (NestedUNet(base_width=64, deep_supervision=False), 36_629_633),
        (UNet(base_width=32), 7_852_545),
    ],
    ids=["unetpp32", "unetpp32-ds", "unetpp64", "unet32"],
)
def test_parameter_counts_follow_the_seed_formula(model: torch.nn.Module, expected: int) -> None:
    assert n_params(model) == expected


@pytest.mark.parametrize("make", ARCHS)
@pytest.mark.parametrize("size", [(64, 64), (250, 333), (17, 40)])
def test_any_resolution_gives_same_size_output(make, size) -> None:
    model = make().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    for o in out if isinstance(out, list) else [out]:
        assert o.shape == (1, 1, *size)


@pytest.mark.parametrize("make", ARCHS)
def test_multi_class_and_any_channel_count(make) -> None:
    model = make(in_channels=1, num_classes=4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 48, 48))
    for o in out if isinstance(out, list) else [out]:
        assert o.shape == (2, 4, 48, 48)


@pytest.mark.parametrize("make", ARCHS)
def test_config_round_trip_rebuilds_the_same_model(make) -> None:
    model = make(in_channels=2, num_classes=3)
    clone = build_model(model_config(model))
    clone.load_state_dict(model.state_dict())
    assert model_config(clone) == model_config(model)
    assert n_params(clone) == n_params(model)


@pytest.mark.parametrize("level", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(64, 64), (250, 333)])
def test_pruned_level_equals_full_model_head(level: int, size) -> None:
    model = NestedUNet(base_width=4).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        full = model(x)[level - 1]
        assert torch.allclose(model(x, level=level), full, atol=1e-5)
        assert torch.allclose(model.prune(level)(x), full, atol=1e-5)


def test_pruned_level_computes_only_the_nodes_it_needs() -> None:
    model = NestedUNet(base_width=4).eval()
    called: list[str] = []
    for name, module in model.named_children():
        if name.startswith("conv"):
            module.register_forward_hook(lambda *_, n=name: called.append(n))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32), level=1)
        assert sorted(called) == ["conv0_0", "conv0_1", "conv1_0"]
        called.clear()
        model(torch.randn(1, 3, 32, 32), level=2)
    assert sorted(called) == ["conv0_0", "conv0_1", "conv0_2", "conv1_0", "conv1_1", "conv2_0"]


@pytest.mark.parametrize(("level", "nodes"), [(1, 3), (2, 6), (3, 10), (4, 15)])
def test_pruned_model_holds_only_its_parameters(level: int, nodes: int) -> None:
    model = NestedUNet(base_width=8)
    pruned = model.prune(level)
    blocks = [n for n, _ in pruned.named_children() if n.startswith("conv")]
    assert len(blocks) == nodes
    used = sum(p.numel() for n, p in model.named_parameters() if n.split(".")[0] in blocks)
    head = sum(p.numel() for p in model.head(level).parameters())
    assert n_params(pruned) == used + head
    assert n_params(pruned) < n_params(model) or level == 4


def test_levels_and_bad_level() -> None:
    assert NestedUNet(base_width=4).levels == [1, 2, 3, 4]
    assert NestedUNet(base_width=4, deep_supervision=False).levels == [4]
    with pytest.raises(ValueError, match="level 5 not available"):
        NestedUNet(base_width=4)(torch.zeros(1, 3, 16, 16), level=5)
    with pytest.raises(ValueError, match="level 2 not available"):
        NestedUNet(base_width=4, deep_supervision=False).prune(2)
