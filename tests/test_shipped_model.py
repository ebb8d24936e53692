"""The model shipped in checkpoints/: loadable safely, self-describing, and good on real slices."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import LGG, ROOT, requires_lgg
from core import load_checkpoint
from core.data import load_source
from core.inference import predict_images
from core.metrics import SegmentationMetrics
from core.runtime import autocast_dtype

SHIPPED = ROOT / "checkpoints" / "unetpp_lgg.pt"
CARD = ROOT / "checkpoints" / "unetpp_lgg.md"


def test_shipped_checkpoint_is_small_safe_and_complete() -> None:
    assert SHIPPED.stat().st_size < 40 * 2**20
    raw = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert raw["format"] == "unetpp-studio" and "optimizer" not in raw
    model, meta = load_checkpoint(SHIPPED)
    assert meta["model"]["arch"] == "unetpp" and model.levels == [1, 2, 3, 4]
    train, val = meta["split"]["train"], meta["split"]["val"]
    assert len(train) + len(val) == 74 and not set(train) & set(val)
    assert meta["preprocessing"]["input_size"] == 256
    assert f"{meta['metrics']['volume_dice_mean']:.3f}" in CARD.read_text()


@requires_lgg
def test_shipped_model_reproduces_its_card_on_the_validation_patients() -> None:
    model, meta = load_checkpoint(SHIPPED)
    slices = load_source(LGG, 256, volumes=meta["split"]["val"])
    probs = predict_images(model, slices.images, meta["preprocessing"], 4, autocast_dtype(torch.device("cpu")))
    metrics = SegmentationMetrics()
    metrics.update(torch.from_numpy(probs), torch.from_numpy(slices.masks.astype(np.int64)), slices.volumes)
    result = metrics.compute()
    assert result["n_volumes"] == 15 and result["n_images"] == 561
    assert result["volume_dice_mean"] == pytest.approx(meta["metrics"]["volume_dice_mean"], abs=0.01)

@requires_lgg
def test_bf16_fast_path_agrees_with_fp32_on_real_slices() -> None:
    """The speed path (channels_last + bf16 autocast) must not change the segmentation."""
    model, meta = load_checkpoint(SHIPPED)
    slices = load_source(LGG, 256, volumes=meta["split"]["val"])
    images = slices.images[slices.positive][:48]
    fp32 = predict_images(model, images, meta["preprocessing"], 4, None) > 0.5
    bf16 = predict_images(model, images, meta["preprocessing"], 4, torch.bfloat16) > 0.5
    agreement = 2 * (fp32 & bf16).sum() / (fp32.sum() + bf16.sum())
    assert fp32.sum() > 10_000 and agreement > 0.99, agreement


def test_the_app_uses_the_shipped_model_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from app.checkpoints import SHIPPED_ENV, shipped_checkpoint

    monkeypatch.delenv(SHIPPED_ENV, raising=False)
    monkeypatch.setenv("UNETPP_STUDIO_RUNS", str(tmp_path / "runs"))
    assert shipped_checkpoint() == SHIPPED
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    assert not at.exception and not at.info
    assert {m.label for m in at.metric} >= {"Dice", "IoU", "Volume Dice"}
