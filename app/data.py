"""Data sets the pages evaluate and preview on, decoded once and shared between sessions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from core.data import SYNTHETIC, DataError, SliceSet, load_source
from core.data.intensity import windows_of
from core.evaluation import select_volumes
from core.paths import PROJECT_ROOT


def resolve_source(source: str, base: Path = PROJECT_ROOT) -> str:
    """``"synthetic"`` as is; a folder as an absolute path (relative ones taken from ``base``)."""
    text = source.strip()
    if text == SYNTHETIC:
        return text
    if not text:
        raise DataError("no data folder given")
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


@st.cache_resource(max_entries=3, show_spinner="Loading data…")
def load_split(source: str, size: int | None, channels: int = 3, num_classes: int = 1,
               split: str = "all", volumes: tuple[str, ...] = (), intensity: str = "none",
               windows: tuple[tuple[int, float, float], ...] = (), axis: str = "axial") -> SliceSet:
    """The slices of ``source`` in a checkpoint's ``split`` (its ``volumes``), or all for ``"all"``.

    Only the volumes needed are decoded, once per argument set, under the checkpoint's
    ``intensity`` policy, fixed ``windows`` (``window_items``) and slicing ``axis``; treat the result
    as read-only.
    """
    ids = None if split == "all" else list(volumes)
    if ids == []:
        raise DataError(f"the model records no {split!r} split")
    fixed = {k: (lo, hi) for k, lo, hi in windows}
    return select_volumes(load_source(source, size, channels, num_classes, ids, intensity, fixed, axis), ids, split)


def window_items(preprocessing: dict) -> tuple[tuple[int, float, float], ...]:
    """A checkpoint's fixed intensity windows as a hashable ``load_split`` argument."""
    return tuple((k, lo, hi) for k, (lo, hi) in sorted(windows_of(preprocessing).items()))


def spread_examples(slices: SliceSet, count: int = 3) -> SliceSet:
    """``count`` slices spread over ``slices``, those with foreground first."""
    candidates = np.flatnonzero(slices.positive)
    if len(candidates) == 0:
        candidates = np.arange(len(slices))
    picks = candidates[np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int)]
    return slices.subset(sorted(set(picks.tolist())))
