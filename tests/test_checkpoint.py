"""Checkpoint format, safe loading, and compatibility with the seed post's saved weights."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import seed_post_model
from core.checkpoint import CheckpointError, atomic_save, load_checkpoint, make_checkpoint, read_checkpoint
from core.models import NestedUNet, UNet


def randomize_bn(model: torch.nn.Module) -> None:
    """Give BatchNorm non-trivial running stats so that a wrong mapping would show."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("deep_supervision", [True, False])
def test_seed_post_state_dict_loads_and_predicts_the_same(tmp_path: Path, deep_supervision: bool) -> None:
    seed = seed_post_model.NestedUNet(1, 3, deep_supervision, nb_filter=(4, 8, 16, 32, 64))
    randomize_bn(seed)
    seed.eval()
    torch.save(seed.state_dict(), tmp_path / "model.pth")
    model, meta = load_checkpoint(tmp_path / "model.pth")
    assert meta["model"] == {"arch": "unetpp", "in_channels": 3, "num_classes": 1, "base_width": 4,
                             "depth": 4, "deep_supervision": deep_supervision}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model(x), seed(x)
    if deep_supervision:
        for a, b in zip(ours, theirs):
            assert torch.allclose(a, b, atol=1e-5)
    else:
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_data_parallel_prefix_is_stripped(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in UNet(base_width=4).state_dict().items()}
    torch.save(state, tmp_path / "dp.pth")
    model, meta = load_checkpoint(tmp_path / "dp.pth")
    assert isinstance(model, UNet) and meta["model"]["base_width"] == 4


def test_whole_pickled_model_is_refused_with_how_to_fix(tmp_path: Path) -> None:
    torch.save(seed_post_model.NestedUNet(1, nb_filter=(4, 8, 16, 32, 64)), tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(seed_post_model.NestedUNet\).*torch.save\(model.state_dict\(\)"):
        load_checkpoint(tmp_path / "model.pth")


class Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": Exploit(tmp_path / "pwned")}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: holds pickled Python objects .*system"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_round_trip_keeps_config_preprocessing_and_meta(tmp_path: Path) -> None:
    model = NestedUNet(in_channels=1, num_classes=3, base_width=4).eval()
    data = make_checkpoint(model, 64, {"mean": [0.5], "std": [0.25]}, metrics={"dice": 0.5}, split={"val": ["a"]})
    atomic_save(data, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["format_version"] == 1
    loaded, meta = load_checkpoint(tmp_path / "c.pt")
    assert meta["preprocessing"] == {"input_size": 64, "mean": [0.5], "std": [0.25]}
    assert meta["metrics"] == {"dice": 0.5} and meta["split"] == {"val": ["a"]}
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x)[3], model(x)[3])


def test_half_precision_weights_load_as_float(tmp_path: Path) -> None:
    model = UNet(base_width=4).eval()
    data = make_checkpoint(model, 32, {"mean": [0, 0, 0], "std": [1, 1, 1]})
    data["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    atomic_save(data, tmp_path / "h.pt")
    loaded, _ = load_checkpoint(tmp_path / "h.pt")
    assert next(loaded.parameters()).dtype == torch.float32


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"definitely not a checkpoint", "corrupt or not a PyTorch checkpoint"),
        (None, "not a UNet\\+\\+ Studio checkpoint"),
        ("truncated", "corrupt"),
    ],
    ids=["garbage", "foreign", "truncated"],
)
def test_bad_files_give_a_clear_error(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"weights": [1, 2, 3]}, path)
    elif content == "truncated":
        atomic_save(make_checkpoint(UNet(base_width=4), 32, {"mean": [0] * 3, "std": [1] * 3}), path)
        path.write_bytes(path.read_bytes()[:5000])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_are_reported(tmp_path: Path) -> None:
    data = make_checkpoint(UNet(base_width=4), 32, {"mean": [0] * 3, "std": [1] * 3})
    data["model"]["base_width"] = 8
    atomic_save(data, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "x.pt")


def test_atomic_save_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    atomic_save({"a": torch.ones(1)}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unsaveable()}, path)
    assert torch.load(path, weights_only=True)["a"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
