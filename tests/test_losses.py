"""Losses against values computed by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.losses import BCEDiceLoss, DeepSupervisionLoss, SoftDiceLoss


def test_soft_dice_by_hand() -> None:
    logits = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]]]])  # p = 0.5 everywhere
    target = torch.tensor([[[1, 0], [0, 0]]])
    # (2 * 0.5 + 1) / (2.0 + 1 + 1) = 0.5
    assert SoftDiceLoss(smooth=1.0)(logits, target).item() == pytest.approx(0.5)


def test_batch_dice_charges_an_empty_slice_only_for_its_false_positives() -> None:
    logits = torch.full((2, 1, 4, 4), -30.0)
    target = torch.zeros(2, 4, 4)
    logits[0, 0, :2, :2] = 30.0  # slice 0: empty truth, 4 false-positive pixels
    logits[1, 0, 2:, 2:] = 30.0  # slice 1: 4 lesion pixels found exactly
    target[1, 2:, 2:] = 1
    # per image: (1 - 1/5 + 1 - 9/9) / 2 = 0.4; over the batch: 1 - (2*4 + 1) / (8 + 4 + 1) = 4/13
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(0.4, abs=1e-6)
    assert SoftDiceLoss(batch=True)(logits, target).item() == pytest.approx(4 / 13, abs=1e-6)
    assert BCEDiceLoss(0.0, batch_dice=True)(logits, target).item() == pytest.approx(4 / 13, abs=1e-6)


def test_bce_dice_mixes_the_two_terms_by_alpha() -> None:
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 8, 8) > 0.7).long()
    bce = F.binary_cross_entropy_with_logits(logits[:, 0], target.float()).item()
    dice = SoftDiceLoss()(logits, target).item()
    for alpha in (0.0, 0.3, 1.0):
        assert BCEDiceLoss(alpha)(logits, target).item() == pytest.approx(alpha * bce + (1 - alpha) * dice, rel=1e-5)


def test_multi_class_uses_cross_entropy_and_one_hot_dice() -> None:
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    ce = F.cross_entropy(logits, target).item()
    probs, onehot = logits.softmax(1), F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    dice = 1 - ((2 * (probs * onehot).sum((2, 3)) + 1) / (probs.sum((2, 3)) + onehot.sum((2, 3)) + 1)).mean().item()
    assert BCEDiceLoss(0.5)(logits, target).item() == pytest.approx(0.5 * ce + 0.5 * dice, rel=1e-5)


def test_loss_decreases_toward_a_perfect_prediction() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    perfect = (target.float() * 20 - 10).unsqueeze(1)
    assert BCEDiceLoss()(perfect, target).item() < 0.01 < BCEDiceLoss()(torch.zeros(1, 1, 8, 8), target).item()


def test_deep_supervision_weights_the_heads() -> None:
    base = BCEDiceLoss()
    target = (torch.rand(1, 8, 8) > 0.5).long()
    heads = [torch.randn(1, 1, 8, 8) for _ in range(4)]
    each = [base(h, target).item() for h in heads]
    assert DeepSupervisionLoss(base)(heads, target).item() == pytest.approx(sum(each) / 4, rel=1e-5)
    weighted = DeepSupervisionLoss(base, [0, 0, 1, 3])(heads, target).item()
    assert weighted == pytest.approx((each[2] + 3 * each[3]) / 4, rel=1e-5)
    assert DeepSupervisionLoss(base)(heads[0], target).item() == pytest.approx(each[0], rel=1e-6)


def test_deep_supervision_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="weights"):
        DeepSupervisionLoss(BCEDiceLoss(), [0, 0])
    with pytest.raises(ValueError, match="2 weights for 4"):
        DeepSupervisionLoss(BCEDiceLoss(), [1, 1])([torch.zeros(1, 1, 4, 4)] * 4, torch.zeros(1, 4, 4))


def test_loss_gradients_are_finite_in_bf16_autocast() -> None:
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = BCEDiceLoss()(logits * 1.0, torch.zeros(2, 16, 16))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(logits.grad).all()


def test_loss_registry_gives_the_choices_and_the_trainers_loss(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from core.losses import LOSSES
    from core.train import build_parser, parse_args
    from core.training.trainer import Trainer

    assert parse_args([]).loss == "bce_dice"
    default = Trainer(parse_args(["--out", str(tmp_path), "--alpha", "0.3", "--distill", "0.1"]))._build_loss()
    assert default.weight == 0.1 and default.loss.loss.alpha == 0.3  # distillation around deep supervision
    monkeypatch.setitem(LOSSES, "dice", lambda config: SoftDiceLoss(batch=config.batch_dice))
    assert "{bce_dice,dice}" in build_parser().format_help()
    loss = Trainer(parse_args(["--loss", "dice", "--batch-dice", "--out", str(tmp_path)]))._build_loss()
    assert isinstance(loss, DeepSupervisionLoss) and isinstance(loss.loss, SoftDiceLoss) and loss.loss.batch
