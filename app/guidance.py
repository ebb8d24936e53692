"""What a checkpoint knows about its own quality, and how an input differs from its training data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.data import SYNTHETIC
from core.scans import Scan
from core.levels import deepest_key, keyed, level_key, level_name
from core.metrics import headline

WEAK_SHARE = 0.9  # a level scoring under 90 % of the deepest head's validation score gets a warning


@dataclass(frozen=True)
class LevelQuality:
    """One level's stored validation score next to the deepest head's."""

    level: str
    metric: str  # "volume Dice" or "Dice"
    value: float
    deepest: str
    deepest_value: float
    source: str  # where the numbers come from, in words

    @property
    def share(self) -> float:
        return self.value / self.deepest_value if self.deepest_value else 1.0

    @property
    def weak(self) -> bool:
        return self.level != self.deepest and self.share < WEAK_SHARE

    def sentence(self) -> str:
        """``"L1: validation volume Dice 0.401, 56 % of L4's 0.715 (source)."``"""
        if self.level == self.deepest:
            return f"{level_name(self.level)}: validation {self.metric} {self.value:.3f} ({self.source})."
        return (f"{level_name(self.level)}: validation {self.metric} {self.value:.3f}, {100 * self.share:.0f} % of "
                f"{level_name(self.deepest)}'s {self.deepest_value:.3f} ({self.source}).")


def data_name(data: str | None) -> str:
    """``"synthetic phantoms"`` or the data folder's name (``"kaggle_3m"``)."""
    if not data:
        return "unknown data"
    return "synthetic phantoms" if data == SYNTHETIC else Path(data).name


def stored_source(meta: dict[str, Any]) -> str:
    """Where a checkpoint's stored metrics come from, e.g. ``"stored in the checkpoint: its 15
    validation volumes of kaggle_3m at epoch 77"``."""
    metrics = meta.get("metrics") or {}
    split = meta.get("split") or {}
    if metrics.get("source") == "cross-validation":  # the shipped model trains on every patient
        return (f"stored in the checkpoint: cross-validated over {metrics['folds']} folds of "
                f"{len(split.get('train') or [])} patients of {data_name(split.get('data'))} "
                f"(the same recipe, {metrics['budget_minutes']:g}-minute runs)")
    if metrics.get("n_volumes"):
        count = f"{metrics['n_volumes']} validation volumes ({metrics.get('n_images', '?')} slices)"
    elif metrics.get("n_images"):
        count = f"{metrics['n_images']} validation images"
    else:
        count = f"{len(split.get('val') or [])} validation volumes"
    epoch = f" at epoch {meta['epoch']}" if "epoch" in meta else ""
    return f"stored in the checkpoint: {count} of {data_name(split.get('data'))}{epoch}"


def stored_levels(meta: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The checkpoint's per-level validation metrics (``meta["metrics"]["levels"]``), or ``{}``."""
    return keyed((meta.get("metrics") or {}).get("levels"))


def stored_metric(levels: dict[str, dict[str, float]]) -> tuple[str, str]:
    """``(key, label)`` of the headline score of stored per-level metrics (``core.metrics.headline``)."""
    return headline(levels.values())


def level_quality(meta: dict[str, Any], level: int | str) -> LevelQuality | None:
    """The stored validation score of ``level`` against the deepest head's; None if not stored."""
    levels = stored_levels(meta)
    deepest = deepest_key(levels)
    if level_key(level) not in levels or deepest is None:
        return None
    key, label = stored_metric(levels)
    value, top = levels[level_key(level)].get(key), levels[deepest].get(key)
    if value is None or top is None:
        return None
    return LevelQuality(level_key(level), label, float(value), deepest, float(top), stored_source(meta))


def input_differences(scan: Scan, meta: dict[str, Any]) -> list[str]:
    """How ``scan`` differs from what the model was trained on (channels, size, bit depth), in words."""
    notes = []
    data = (meta.get("split") or {}).get("data") or (meta.get("train_config") or {}).get("data")
    trained = data_name(data)
    channels = meta["model"].get("in_channels", 3)
    first = scan.slices[0]
    grey = bool(scan.channels_note) or (first.shape[-1] == 3 and np.array_equal(first[..., 0], first[..., 1])
                                        and np.array_equal(first[..., 1], first[..., 2]))
    if grey and channels == 3:
        notes.append(f"one channel (grey), copied into the 3 the model takes; it was trained on 3-channel images of "
                     f"{trained} (LGG: pre-contrast, FLAIR, post-contrast), so a FLAIR series matches best")
    size = meta["preprocessing"].get("input_size")
    h, w = scan.slices.shape[1:3]
    # a square slice shrunk to the input size is what training did too: only a stretch or an enlargement differs
    if size and h != w:
        notes.append(f"slices of {w}×{h} pixels, resized to the {size}×{size} the model was trained at, which "
                     f"changes the aspect ratio")
    elif size and h < size:
        notes.append(f"slices of {w}×{h} pixels, enlarged to the {size}×{size} the model was trained at: less "
                     f"detail than it learned from")
    if not scan.intensity_note.startswith("8-bit") and not meta["preprocessing"].get("windowed"):
        notes.append(f"{scan.intensity_note.split(' values')[0]} values mapped to 8 bits (the training images were 8-bit)")
    return notes
