"""The seed design's loss: alpha * cross-entropy + (1 - alpha) * soft Dice."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.losses.dice import SoftDiceLoss


class BCEDiceLoss(nn.Module):
    """``alpha * BCE + (1 - alpha) * soft Dice`` for binary logits ``(N, 1, H, W)``.

    With multi-class logits ``(N, C, H, W)`` the BCE term becomes softmax cross-entropy over
    the class-index target, so one loss serves both cases.

    Args:
        alpha: weight of the cross-entropy term (0.5 in the seed design).
        smooth: Dice smoothing constant.
        batch_dice: compute the Dice term over the whole batch (see ``SoftDiceLoss``).

    Example:
        >>> loss = BCEDiceLoss(alpha=0.5)
        >>> loss(torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 8)).item() > 0
        True
    """

    def __init__(self, alpha: float = 0.5, smooth: float = 1.0, batch_dice: bool = False) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.dice = SoftDiceLoss(smooth, batch_dice)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if target.ndim == 4:
            target = target[:, 0]
        if logits.shape[1] == 1:
            ce = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
        else:
            ce = F.cross_entropy(logits, target.long())
        return self.alpha * ce + (1 - self.alpha) * self.dice(logits, target)
