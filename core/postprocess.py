"""Turning a volume's lesion probabilities into its mask: threshold, then 3D connected components.

A checkpoint may carry the rule chosen on validation folds in ``postprocessing``
(``{"threshold": 0.5, "min_component_fraction": 0.1, "hflip": True}``), for the deepest head, and,
under ``"levels"``, the threshold and component share chosen for each pruned head (the flip is one
per checkpoint: the app computes every level in one pass). ``core.predict``, ``core.evaluate``
and the Segment page use it by default, and a checkpoint without one keeps threshold 0.5, every
component and no test-time flip.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

DEFAULT = {"threshold": 0.5, "min_component_fraction": 0.0, "hflip": False}
_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)  # 6-connected voxels


PER_LEVEL = ("threshold", "min_component_fraction")  # what a pruned head's own rule may change


def rule_of(meta: dict[str, Any], level: int | str | None = None) -> dict[str, float]:
    """The post-processing rule a checkpoint's metadata carries for ``level`` (its own threshold and component
    share where it has them, else the deepest head's), defaults filled in.

    Example:
        >>> meta = {"postprocessing": {"threshold": 0.3, "hflip": True, "levels": {"2": {"threshold": 0.1}}}}
        >>> rule_of(meta, 2), rule_of(meta, 4) == rule_of(meta)
        ({'threshold': 0.1, 'min_component_fraction': 0.0, 'hflip': True}, True)
    """
    stored = dict(meta.get("postprocessing") or {})
    own = stored.pop("levels", {}).get(str(level), {})
    return DEFAULT | stored | {k: v for k, v in own.items() if k in PER_LEVEL}


def filter_components(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """Keep the 3D connected components of ``mask (S, H, W)`` with at least ``min_fraction`` of the largest's voxels.

    ``min_fraction=0`` keeps everything, ``1`` only the largest component.

    Example:
        >>> m = np.zeros((1, 1, 12), bool); m[0, 0, :6] = True; m[0, 0, 8] = True
        >>> [int(filter_components(m, f).sum()) for f in (0.5, 0.1, 0)]
        [6, 7, 7]
    """
    if min_fraction <= 0 or not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=_CONNECTIVITY)
    if count == 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    return np.isin(labels, keep)


def volume_mask(lesion: np.ndarray, rule: dict[str, float] = DEFAULT) -> np.ndarray:
    """Boolean lesion mask ``(S, H, W)`` of one volume's lesion probabilities under ``rule``.

    Example:
        >>> p = np.zeros((2, 4, 4), np.float32); p[0, :2, :2] = 0.9; p[1, 3, 3] = 0.6
        >>> int(volume_mask(p).sum()), int(volume_mask(p, {"threshold": 0.7}).sum())
        (5, 4)
        >>> int(volume_mask(p, {"threshold": 0.5, "min_component_fraction": 0.5}).sum())
        4
    """
    rule = DEFAULT | rule
    return filter_components(lesion >= rule["threshold"], rule["min_component_fraction"])
