"""Colours shared by charts and overlays (the primary colour matches ``.streamlit/config.toml``)."""
from __future__ import annotations

PRIMARY = "#0f766e"
SOFT = "#cfdad7"
MUTED = "#8a9aa6"
LESION_RGB = (239, 68, 68)
TRUTH_RGB = (34, 197, 94)
LEVEL_COLORS = {"1": "#94c9c0", "2": "#4fa89b", "3": "#1f7f73", "4": "#0b4f47", "ens": "#d97706"}


def level_color(level: str | int) -> str:
    """The colour of a pruning level (``1``..``4`` or ``"ens"``) in every chart."""
    return LEVEL_COLORS.get(str(level), PRIMARY)


def level_name(level: str | int) -> str:
    """``"L3"`` for level 3, ``"ensemble"`` for ``"ens"``."""
    return "ensemble" if str(level) == "ens" else f"L{level}"
