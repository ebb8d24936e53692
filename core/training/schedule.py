"""Learning-rate schedules laid over a run's progress (0 -> 1), by epochs or by a time budget.

``"plateau"`` is the seed recipe (ReduceLROnPlateau on validation IoU, stepped by the trainer);
``"cosine"`` and ``"poly"`` (nnU-Net's ``(1 - t) ** 0.9``) decay to zero at the end of the run
after a linear warm-up, so a run that ends on time ends with a finished schedule.
"""
from __future__ import annotations

import math

SCHEDULES = ("plateau", "cosine", "poly")


def lr_factor(schedule: str, progress: float, warmup: float = 0.0) -> float:
    """The multiplier of the base learning rate at ``progress`` (0..1) of the run.

    Example:
        >>> [round(lr_factor("cosine", t, warmup=0.1), 3) for t in (0.0, 0.05, 0.1, 0.55, 1.0)]
        [0.01, 0.5, 1.0, 0.5, 0.0]
        >>> round(lr_factor("poly", 0.5), 3), lr_factor("plateau", 0.7)
        (0.536, 1.0)
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {SCHEDULES}")
    if schedule == "plateau":
        return 1.0
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 0.01)
    t = (progress - warmup) / (1 - warmup) if warmup < 1 else 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    return (1 - t) ** 0.9
