"""Soft Dice loss for binary (sigmoid) and multi-class (softmax) logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid for one output channel, softmax over channels otherwise.

    Example:
        >>> probabilities(torch.zeros(1, 1, 1, 1)).flatten().tolist()  # sigmoid
        [0.5]
        >>> probabilities(torch.zeros(1, 2, 1, 1)).flatten().tolist()  # softmax over 2 classes
        [0.5, 0.5]
    """
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def one_hot_target(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(N, H, W)`` or ``(N, 1, H, W)`` class indices -> ``(N, C, H, W)`` float one-hot.

    For ``num_classes == 1`` the target is taken as a 0/1 mask and returned as ``(N, 1, H, W)``.

    Example:
        >>> one_hot_target(torch.tensor([[[0, 2]]]), 3).tolist()
        [[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]]]
    """
    if target.ndim == 4:
        target = target[:, 0]
    if num_classes == 1:
        return target.unsqueeze(1).float()
    return F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).float()


class SoftDiceLoss(nn.Module):
    """``1 - (2|P∩T| + s) / (|P| + |T| + s)`` per image and class, averaged.

    For multi-class logits the background class (0) is included, as in the seed design.
    ``batch=True`` sums over the whole batch before the ratio (nnU-Net's "batch Dice", MONAI's
    ``batch=True``): a tumour-free slice then costs only through its false positives, instead of
    a near-constant penalty for any probability mass, which makes per-image Dice over-cautious
    on small lesions.

    Example:
        >>> logits = torch.full((1, 1, 4, 4), 10.0)
        >>> round(SoftDiceLoss()(logits, torch.ones(1, 4, 4)).item(), 4)
        0.0
    """

    def __init__(self, smooth: float = 1.0, batch: bool = False) -> None:
        super().__init__()
        self.smooth, self.batch = smooth, batch

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = probabilities(logits.float())
        truth = one_hot_target(target, logits.shape[1])
        dims = (0, 2, 3) if self.batch else (2, 3)
        inter = (probs * truth).sum(dim=dims)
        total = probs.sum(dim=dims) + truth.sum(dim=dims)
        return 1 - ((2 * inter + self.smooth) / (total + self.smooth)).mean()
