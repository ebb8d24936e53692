"""Losses, one per file, and ``LOSSES``: the per-head losses ``--loss`` chooses from.

A builder takes the training options (``TrainConfig``, or anything with the same attributes) and
returns the loss of one head's logits against the masks; the trainer applies it to every
deep-supervision head (``DeepSupervisionLoss``) and adds self-distillation with ``--distill``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from core.losses.bce_dice import BCEDiceLoss
from core.losses.deep_supervision import DeepSupervisionLoss
from core.losses.dice import SoftDiceLoss, probabilities
from core.losses.distillation import SelfDistillationLoss


def bce_dice(config: Any) -> nn.Module:
    """The seed recipe: ``alpha * BCE + (1 - alpha) * soft Dice`` (``--alpha``, ``--batch-dice``)."""
    return BCEDiceLoss(config.alpha, batch_dice=config.batch_dice)


LOSSES: dict[str, Callable[[Any], nn.Module]] = {
    "bce_dice": bce_dice,
}


def build_loss(name: str, config: Any) -> nn.Module:
    """The per-head loss registered as ``name``, built from the training options.

    Example:
        >>> from types import SimpleNamespace
        >>> build_loss("bce_dice", SimpleNamespace(alpha=0.3, batch_dice=True)).alpha
        0.3
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
    return LOSSES[name](config)


__all__ = ["LOSSES", "BCEDiceLoss", "DeepSupervisionLoss", "SelfDistillationLoss", "SoftDiceLoss", "build_loss",
           "probabilities"]
