"""Where the project keeps things: its root, the shipped model and the runs folder.

The CLIs and the app read these defaults from here (``UNETPP_STUDIO_CHECKPOINT`` and
``UNETPP_STUDIO_RUNS`` move the app's model and the runs).
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = PROJECT_ROOT / "checkpoints" / "unetpp_lgg.pt"  # the shipped model
SHIPPED_ENV = "UNETPP_STUDIO_CHECKPOINT"
RUNS_ENV = "UNETPP_STUDIO_RUNS"


def shipped_checkpoint() -> Path:
    """The model the app uses by default: ``$UNETPP_STUDIO_CHECKPOINT`` or ``checkpoints/unetpp_lgg.pt``."""
    return Path(os.environ.get(SHIPPED_ENV) or DEFAULT_CHECKPOINT)


def runs_root() -> Path:
    """The folder holding runs: ``$UNETPP_STUDIO_RUNS`` or ``runs/`` in the project."""
    return Path(os.environ.get(RUNS_ENV) or PROJECT_ROOT / "runs")
