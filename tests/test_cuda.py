"""The CUDA path: AMP (bf16 and fp16 with a GradScaler), channels_last, CPU/GPU agreement.

Skipped without a CUDA GPU (CI has none); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core import evaluate, train
from core.checkpoint import load_checkpoint
from core.data.synthetic import make_synthetic
from core.inference import predict_images
from core.training.config import TrainConfig
from core.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_training_on_cuda_learns_and_loads_on_cpu(tmp_path: Path, precision: str) -> None:
    data = make_synthetic(n_volumes=8, slices_per_volume=12, size=64, seed=1)
    config = TrainConfig(out=str(tmp_path / "run"), width=8, size=64, epochs=8, lr=3e-3, val_fraction=0.25,
                         device="cuda", precision=precision)
    trainer = Trainer(config, data=data)
    summary = trainer.fit()
    assert trainer.device.type == "cuda" and trainer.scaler.is_enabled() == (precision == "fp16")
    scores = [e["score"] for e in trainer.epochs_history]
    assert summary["reason"] == "completed" and max(scores) > 0.6, scores
    model, meta = load_checkpoint(tmp_path / "run" / "best.pt")  # loads onto the CPU
    assert next(model.parameters()).device.type == "cpu"


def test_gpu_amp_and_cpu_fp32_predictions_agree(tmp_path: Path) -> None:
    data = make_synthetic(n_volumes=6, slices_per_volume=8, size=64, seed=2)
    Trainer(TrainConfig(out=str(tmp_path / "run"), width=8, size=64, epochs=6, lr=3e-3, device="cuda"), data=data).fit()
    cpu_model, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    gpu_model, _ = load_checkpoint(tmp_path / "run" / "best.pt", "cuda")
    assert next(gpu_model.parameters()).is_cuda
    for dtype in (torch.bfloat16, torch.float16):
        cpu = predict_images(cpu_model, data.images, meta["preprocessing"], 4, None) > 0.5
        gpu = predict_images(gpu_model, data.images, meta["preprocessing"], 4, dtype) > 0.5
        agreement = 2 * (cpu & gpu).sum() / max(cpu.sum() + gpu.sum(), 1)
        assert cpu.sum() > 1000 and agreement > 0.99, (dtype, agreement)


def test_cli_train_and_evaluate_on_cuda(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train.main(["--data", "synthetic", "--epochs", "2", "--width", "4", "--size", "64",
                       "--device", "cuda", "--out", str(run)]) == 0
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[0]["device"].startswith("cuda") and history[0]["precision"] == "torch.bfloat16"
    out = tmp_path / "eval.json"
    assert evaluate.main(["--checkpoint", str(run / "best.pt"), "--data", "synthetic", "--device", "cuda",
                          "--json", str(out), "--timing-repeats", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["device"].startswith("cuda") and np.isfinite(result["levels"]["4"]["ms_per_image"])
