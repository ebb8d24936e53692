"""Self-distillation for deep supervision: the shallow heads also learn the deepest head's probabilities."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SelfDistillationLoss(nn.Module):
    """``loss(outputs, target) + weight * mean over shallow heads of CE(head, deepest head's probabilities)``.

    The deepest head is the teacher and is not pushed towards the students (its probabilities
    are detached). Pruned levels (L1..L3) then learn the full model's soft boundaries as well
    as the mask. A single tensor (no deep supervision) gets ``loss`` alone.

    Example:
        >>> from core.losses import BCEDiceLoss, DeepSupervisionLoss
        >>> base = DeepSupervisionLoss(BCEDiceLoss())
        >>> heads = [torch.zeros(1, 1, 4, 4, requires_grad=True), torch.full((1, 1, 4, 4), 3.0)]
        >>> target = torch.zeros(1, 4, 4)
        >>> float(SelfDistillationLoss(base, 0.5)(heads, target)) > float(base(heads, target))
        True
    """

    def __init__(self, loss: nn.Module, weight: float = 0.5) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.loss, self.weight = loss, weight

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        base = self.loss(outputs, target)
        if isinstance(outputs, torch.Tensor) or len(outputs) < 2 or self.weight == 0:
            return base
        teacher = outputs[-1].float().detach()
        terms = []
        for student in outputs[:-1]:
            student = student.float()
            if student.shape[1] == 1:
                terms.append(F.binary_cross_entropy_with_logits(student, torch.sigmoid(teacher)))
            else:
                terms.append(-(teacher.softmax(1) * student.log_softmax(1)).sum(1).mean())
        return base + self.weight * torch.stack(terms).mean()
