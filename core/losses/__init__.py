"""Losses, one per file."""
from core.losses.bce_dice import BCEDiceLoss
from core.losses.deep_supervision import DeepSupervisionLoss
from core.losses.dice import SoftDiceLoss, probabilities

__all__ = ["BCEDiceLoss", "DeepSupervisionLoss", "SoftDiceLoss", "probabilities"]
