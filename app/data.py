"""Data sets the pages evaluate and preview on, decoded once and shared between sessions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from core.data import SYNTHETIC, DataError, SliceSet, load_source
from core.runs import PROJECT_ROOT


def resolve_source(source: str, base: Path = PROJECT_ROOT) -> str:
    """``"synthetic"`` as is; a folder as an absolute path (relative ones taken from ``base``)."""
    text = source.strip()
    if text == SYNTHETIC:
        return text
    if not text:
        raise DataError("no data folder given")
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


@st.cache_resource(max_entries=2, show_spinner="Loading data…")
def load_slices(source: str, size: int | None, channels: int = 3, num_classes: int = 1) -> SliceSet:
    """``core.data.load_source`` once per (source, size); treat the result as read-only."""
    return load_source(source, size, channels, num_classes)


def validation_examples(slices: SliceSet, val_volumes: list[str], count: int = 3) -> SliceSet:
    """``count`` slices with foreground from the validation volumes, spread over them."""
    val = slices.select_volumes(val_volumes)
    if len(val) == 0:
        raise DataError("none of the run's validation volumes are in its data any more")
    candidates = np.flatnonzero(val.positive)
    if len(candidates) == 0:
        candidates = np.arange(len(val))
    picks = candidates[np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int)]
    return val.subset(sorted(set(picks.tolist())))
