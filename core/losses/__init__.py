"""Losses, one per file."""
from core.losses.bce_dice import BCEDiceLoss
from core.losses.deep_supervision import DeepSupervisionLoss
from core.losses.dice import SoftDiceLoss, probabilities
from core.losses.distillation import SelfDistillationLoss

__all__ = ["BCEDiceLoss", "DeepSupervisionLoss", "SelfDistillationLoss", "SoftDiceLoss", "probabilities"]
