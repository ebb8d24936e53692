"""ONNX export: ONNX Runtime agrees with torch at any batch and size; bad levels get a message."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from core import export
from core.checkpoint import atomic_save, default_normalization, load_checkpoint, make_checkpoint
from core.inference import normalize, predict_level
from core.models import NestedUNet


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    model = NestedUNet(3, 1, base_width=4, deep_supervision=True)
    for module in model.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "model.pt"
    atomic_save(make_checkpoint(model, 64, default_normalization(3)), path)
    return path


def test_onnx_runtime_matches_torch_for_any_batch_and_size(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "L2.onnx"
    assert export.main(["--checkpoint", str(checkpoint), "--level", "2", "--onnx", str(out)]) == 0
    assert "level 2" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["unetpp_studio.level"] == "2" and meta["unetpp_studio.input_size"] == "64"

    model, ckpt_meta = load_checkpoint(checkpoint)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 64, 64), (3, 3, 50, 77), (2, 3, 128, 96)]:
        pixels = rng.integers(0, 256, shape).astype(np.float32)
        got = session.run(None, {"image": pixels})[0]
        x = normalize(torch.from_numpy(pixels).to(torch.uint8), ckpt_meta["preprocessing"]["mean"], ckpt_meta["preprocessing"]["std"])
        want = predict_level(model, x, 2).numpy()
        assert got.shape == (shape[0], 1, *shape[2:])
        assert np.abs(got - want).max() < 1e-3, shape


@pytest.mark.parametrize("level, message", [("7", "has levels \\[1, 2, 3, 4\\]"), ("x", "invalid literal")])
def test_bad_level_is_refused_with_a_message(checkpoint: Path, tmp_path: Path, capsys, level: str, message: str) -> None:
    assert export.main(["--checkpoint", str(checkpoint), "--level", level, "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert list(tmp_path.glob("*.onnx")) == []
    err = capsys.readouterr().err
    assert err.startswith("error:") and re.search(message, err), err


def test_missing_checkpoint_is_named(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.pt"
    assert export.main(["--checkpoint", str(missing), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert str(missing) in capsys.readouterr().err
