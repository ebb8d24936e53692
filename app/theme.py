"""Colours shared by charts and overlays (the primary colour matches ``.streamlit/config.toml``)."""
from __future__ import annotations

from core.levels import ENSEMBLE, Level, level_key

PRIMARY = "#0f766e"
SOFT = "#cfdad7"
MUTED = "#8a9aa6"
LESION_RGB = (239, 68, 68)
TRUTH_RGB = (34, 197, 94)
CLASS_RGB = (LESION_RGB, (59, 130, 246), (234, 179, 8), (168, 85, 247), (107, 114, 128))  # class 1, 2, ...
CLASS_TEXT = ("red", "blue", "orange", "violet", "gray")  # the same colours as Streamlit markdown names
LEVEL_COLORS = {"1": "#94c9c0", "2": "#4fa89b", "3": "#1f7f73", "4": "#0b4f47", ENSEMBLE: "#d97706"}


def level_color(level: Level) -> str:
    """The colour of a pruning level (a head or the ensemble) in every chart."""
    return LEVEL_COLORS.get(level_key(level), PRIMARY)
