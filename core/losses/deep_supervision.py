"""Deep-supervision wrapper: one loss applied to every head, combined with weights."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class DeepSupervisionLoss(nn.Module):
    """Weighted mean of ``loss(head_logits, target)`` over the heads.

    Args:
        loss: the per-head loss.
        weights: one weight per head (normalised to sum 1); equal weights by default, as in the
            UNet++ paper.

    A single tensor (a model without deep supervision) is passed straight to ``loss``.

    Example:
        >>> from core.losses import BCEDiceLoss
        >>> ds = DeepSupervisionLoss(BCEDiceLoss(), weights=[1, 1, 1, 2])
        >>> heads = [torch.zeros(1, 1, 4, 4)] * 4
        >>> float(ds(heads, torch.zeros(1, 4, 4))) == float(BCEDiceLoss()(heads[0], torch.zeros(1, 4, 4)))
        True
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]
        if self.weights is not None and (min(self.weights) < 0 or sum(self.weights) <= 0):
            raise ValueError(f"weights must be non-negative with a positive sum, got {self.weights}")

    def head_losses(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> list[torch.Tensor]:
        """The loss of each head, unweighted."""
        return [self.loss(o, target) for o in outputs]

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = self.weights or [1.0] * len(outputs)
        if len(weights) != len(outputs):
            raise ValueError(f"{len(weights)} weights for {len(outputs)} deep-supervision heads")
        total = sum(weights)
        return sum(w / total * l for w, l in zip(weights, self.head_losses(outputs, target)))
