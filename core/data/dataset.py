"""Torch dataset over a ``SliceSet`` (augmented by ``core.data.augmentation``) and per-epoch sampling."""
from __future__ import annotations

from collections.abc import Iterator

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from core.data.slices import SliceSet


class SliceDataset(Dataset):
    """Yields ``(image uint8 (C, H, W), mask uint8 (H, W), index)``; normalisation happens on the device."""

    def __init__(self, slices: SliceSet, augment: A.Compose | None = None) -> None:
        self.slices, self.augment = slices, augment

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image, mask = self.slices.images[i], self.slices.masks[i]
        if self.augment is not None:
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(mask), i


class EpochSampler(Sampler[int]):
    """Each epoch: every slice with foreground plus a random share of empty slices, shuffled.

    ``empty_fraction=1`` uses every slice. With ``areas`` (lesion pixels per slice) the epoch
    instead draws as many slices with replacement, half of the probability in proportion to the
    lesion area and half uniform, as Buda et al. sample. Call ``set_epoch`` for a new draw per epoch. With
    ``num_replicas > 1`` (distributed training) every rank draws the same epoch and takes every
    ``num_replicas``-th slice from ``rank`` on, the draw padded by wrapping so all ranks run as
    many steps.
    """

    def __init__(self, positive: np.ndarray, empty_fraction: float = 1.0, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, areas: np.ndarray | None = None) -> None:
        self.positive, self.empty_fraction, self.seed, self.epoch = positive, empty_fraction, seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.weights = None
        if areas is not None and areas.sum() > 0:
            self.weights = 0.5 * areas / areas.sum() + 0.5 / len(areas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _draw(self) -> np.ndarray:
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.weights is not None:
            drawn = rng.choice(len(self.weights), size=self._total(), p=self.weights)
        else:
            pos, neg = np.flatnonzero(self.positive), np.flatnonzero(~self.positive)
            neg = rng.permutation(neg)[: round(len(neg) * self.empty_fraction)]
            drawn = rng.permutation(np.concatenate([pos, neg]))
        if self.num_replicas == 1:
            return drawn
        padded = np.resize(drawn, len(self) * self.num_replicas)  # np.resize repeats from the start
        return padded[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._draw().tolist())

    def _total(self) -> int:
        return int(self.positive.sum()) + round(int((~self.positive).sum()) * self.empty_fraction)

    def __len__(self) -> int:
        return -(-self._total() // self.num_replicas)
