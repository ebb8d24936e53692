"""The model shipped in checkpoints/: loadable safely, self-describing, and good on real slices."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import LGG, ROOT, requires_lgg
from core import load_checkpoint
from core.data import load_source
from core.inference import predict_images

SHIPPED = ROOT / "checkpoints" / "unetpp_lgg.pt"
CARD = ROOT / "checkpoints" / "unetpp_lgg.md"


def test_shipped_checkpoint_is_small_safe_and_complete() -> None:
    assert SHIPPED.stat().st_size < 40 * 2**20
    raw = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert raw["format"] == "unetpp-studio" and "optimizer" not in raw and "train_state_dict" not in raw
    model, meta = load_checkpoint(SHIPPED)
    assert meta["model"]["arch"] == "unetpp" and model.levels == [1, 2, 3, 4]
    train, val = meta["split"]["train"], meta["split"]["val"]
    assert len(train) + len(val) == 74 and not set(train) & set(val)
    assert meta["preprocessing"]["input_size"] == 128 and meta["preprocessing"]["intensity"] == "volume"
    assert set(meta["postprocessing"]) == {"threshold", "min_component_fraction", "hflip", "levels"}
    assert set(meta["postprocessing"]["levels"]) == {"1", "2", "3"}  # each pruned head has its own rule
    for level, rule in meta["postprocessing"]["levels"].items():
        assert set(rule) == {"threshold", "min_component_fraction"}
        assert 0 < meta["metrics"]["levels"][level]["postprocessed_volume_dice_mean"] <= 1
    card = CARD.read_text()
    assert meta["metrics"]["source"] == "cross-validation"  # it trained on every patient: the estimate is the recipe's
    assert f"{meta['metrics']['volume_dice_mean']:.3f}" in card
    assert f"{meta['training_fit']['4']['volume_dice_mean']:.3f}" in card


@requires_lgg
def test_core_evaluate_reproduces_the_cards_training_fit(tmp_path: Path) -> None:
    """``core.evaluate --split train`` gives the numbers the card and the checkpoint state (L4, with
    and without the post-processing rule): the shipped weights, preprocessing and rule are intact."""
    from core.evaluate import main

    out = tmp_path / "fit.json"
    assert main(["--checkpoint", str(SHIPPED), "--data", str(LGG), "--split", "train", "--levels", "4",
                 "--timing-repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    _, meta = load_checkpoint(SHIPPED)
    stated = meta["training_fit"]["4"]
    assert result["n_volumes"] == 74
    row = result["levels"]["4"]
    assert row["volume_dice_mean"] == pytest.approx(stated["volume_dice_mean"], abs=0.01)
    assert row["postprocessed"]["volume_dice_mean"] == pytest.approx(stated["postprocessed"]["volume_dice_mean"],
                                                                     abs=0.01)


@requires_lgg
def test_bf16_fast_path_agrees_with_fp32_on_real_slices() -> None:
    """The speed path (channels_last + bf16 autocast) must not change the segmentation."""
    model, meta = load_checkpoint(SHIPPED)
    pre = meta["preprocessing"]
    slices = load_source(LGG, pre["input_size"], volumes=meta["split"]["train"][:15], intensity=pre["intensity"])
    images = slices.images[slices.positive][:48]
    fp32 = predict_images(model, images, pre, 4, None) > 0.5
    bf16 = predict_images(model, images, pre, 4, torch.bfloat16) > 0.5
    agreement = 2 * (fp32 & bf16).sum() / (fp32.sum() + bf16.sum())
    assert fp32.sum() > 2_500 and agreement > 0.99, agreement


def test_the_app_uses_the_shipped_model_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from app.checkpoints import SHIPPED_ENV, shipped_checkpoint

    monkeypatch.delenv(SHIPPED_ENV, raising=False)
    monkeypatch.setenv("UNETPP_STUDIO_RUNS", str(tmp_path / "runs"))
    assert shipped_checkpoint() == SHIPPED
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    assert not at.exception and not at.info
    assert {m.label for m in at.metric} >= {"Dice", "IoU", "Volume Dice"}
