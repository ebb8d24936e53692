"""Every registered architecture (and a toy one, registered here): any size, multi-class, channels,
pruning, ONNX export and the config round trip; UNet++'s parameter counts and pruning in detail."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.checkpoint import atomic_save, default_normalization, load_checkpoint, make_checkpoint
from core.export import export_onnx
from core.inference import normalize, predict_level
from core.models import ARCHITECTURES, NestedUNet, UNet, build_model, model_config
from core.train import build_parser, parse_args
from toy_net import ToyNet

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
NAMES = [*ARCHITECTURES, ToyNet.arch]  # the registry, plus the toy that the `arch` fixture registers


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> type[ToyNet]:
    """The toy architecture, registered for one test: its one registry line."""
    monkeypatch.setitem(ARCHITECTURES, ToyNet.arch, ToyNet)
    return ToyNet


def variants(name: str) -> list[dict]:
    """Each architecture as built by default and, where it takes the switch, without deep supervision."""
    cls = ARCHITECTURES.get(name, ToyNet)
    plain = [{"deep_supervision": False}] if "deep_supervision" in cls.arguments() else []
    return [{"arch": name, "base_width": 4, **v} for v in [{}, *plain]]


ARCHS = [pytest.param(config, id=f"{config['arch']}{'' if config.get('deep_supervision', True) else '-single'}")
         for name in NAMES for config in variants(name)]


def registered(request: pytest.FixtureRequest, name: str) -> str:
    if name == ToyNet.arch:
        request.getfixturevalue("toy")
    return name


@pytest.fixture(params=NAMES)
def arch(request: pytest.FixtureRequest) -> str:
    """Each architecture's registry name."""
    return registered(request, request.param)


@pytest.fixture(params=ARCHS)
def make(request: pytest.FixtureRequest):
    """Builds one variant of an architecture through the registry (``build_model``), with extra arguments."""
    config = request.param
    registered(request, config["arch"])
    return lambda **kw: build_model(config | kw)


def heads_of(out: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return out if isinstance(out, list) else [out]


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


@pytest.mark.parametrize("size", [(64, 64), (50, 70), (250, 333), (17, 40)])
def test_any_resolution_gives_same_size_output(make, size) -> None:
    model = make().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    for o in out if isinstance(out, list) else [out]:
        assert o.shape == (1, 1, *size)


def test_multi_class_and_any_channel_count(make) -> None:
    model = make(in_channels=1, num_classes=4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 48, 48))
    for o in out if isinstance(out, list) else [out]:
        assert o.shape == (2, 4, 48, 48)


def test_config_round_trip_rebuilds_the_same_model(make) -> None:
    model = make(in_channels=2, num_classes=3)
    clone = build_model(model_config(model))
    clone.load_state_dict(model.state_dict())
    assert model_config(clone) == model_config(model)
    assert n_params(clone) == n_params(model)
    x = torch.randn(1, 2, 40, 40)
    with torch.no_grad():
        for a, b in zip(heads_of(model.eval()(x)), heads_of(clone.eval()(x))):
            assert torch.equal(a, b)


@pytest.mark.parametrize("size", [(64, 64), (50, 70)])
def test_every_level_equals_its_head_and_its_pruned_model(make, size) -> None:
    model = make().eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        full = heads_of(model(x))
        assert len(full) == len(model.levels)
        for level, head in zip(model.levels, full):
            assert torch.allclose(model(x, level=level), head, atol=1e-5)
            pruned = model.prune(level)
            assert pruned.levels[-1] == level and not pruned.deep_supervision
            assert torch.allclose(pruned(x), head, atol=1e-5)


def test_onnx_export_matches_torch_at_any_size(arch: str, tmp_path: Path) -> None:
    model = build_model({"arch": arch, "base_width": 4, "depth": 2}).eval()  # small graphs: export is slow
    meta = {"model": model_config(model), "preprocessing": {"input_size": 32, **default_normalization(3)}}
    level = model.levels[0]
    session = ort.InferenceSession(str(export_onnx(model, meta, level, tmp_path / "m.onnx")),
                                   providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).integers(0, 256, (1, 3, 50, 70)).astype(np.float32)
    x = normalize(torch.from_numpy(pixels).to(torch.uint8), meta["preprocessing"]["mean"], meta["preprocessing"]["std"])
    want = predict_level(model, x, level).numpy()
    assert np.abs(session.run(None, {"image": pixels})[0] - want).max() < 1e-3


def test_a_toy_architecture_is_one_file_plus_one_registry_line(toy: type[ToyNet], tmp_path: Path) -> None:
    """``tests/toy_net.py`` and the ``toy`` fixture's ``setitem`` are all it takes."""
    arch = next(a for a in build_parser()._actions if a.dest == "arch")
    assert "toy" in arch.choices and "{unetpp,unet,toy}" in build_parser().format_help()
    assert parse_args(["--arch", "toy"]).arch == "toy"

    model = ToyNet(base_width=4).eval()  # checkpoints load through the registry
    atomic_save(make_checkpoint(model, 32, default_normalization(3)), tmp_path / "toy.pt")
    loaded, meta = load_checkpoint(tmp_path / "toy.pt")
    assert isinstance(loaded, ToyNet) and meta["model"]["arch"] == "toy" and loaded.levels == [1, 2]

    at = AppTest.from_file(APP, default_timeout=60).run()  # the Train page offers it by its display name
    at.switch_page("pages/1_Train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    box = next(s for s in at.selectbox if s.label == "Architecture")
    assert box.options == ["UNet++", "U-Net", "Toy net"]


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


@pytest.mark.parametrize("net", [NestedUNet, UNet])
def test_the_fast_concat_backward_gives_torch_cats_gradients(net: type, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    module = importlib.import_module(net.__module__)
    x, target = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32)

    def gradients() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = net(base_width=4).to(memory_format=torch.channels_last).train()
        outputs = heads_of(model(x.contiguous(memory_format=torch.channels_last)))
        loss = sum((o - target).square().mean() for o in outputs)
        loss.backward()
        return {name: p.grad for name, p in model.named_parameters()}
    fast = gradients()
    monkeypatch.setattr(module, "concat", lambda tensors: torch.cat(tensors, 1))
    reference = gradients()
    assert fast.keys() == reference.keys()
    for name, grad in fast.items():
        torch.testing.assert_close(grad, reference[name], rtol=1e-4, atol=1e-6, msg=name)
