"""Which models the pages can use, loading them once per file version, and the model picker."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
import torch
from torch import nn

from app.state import CHECKPOINT, persistent_selectbox
from core.checkpoint import CheckpointError, load_checkpoint
from core.data import SYNTHETIC
from core.models import display_name
from core.paths import DEFAULT_CHECKPOINT, runs_root, shipped_checkpoint
from core.paths import SHIPPED_ENV  # noqa: F401  (its name, for code that sets or clears the override)
from core.runs import list_runs
from core.runtime import autocast_dtype, select_device


@dataclass(frozen=True)
class ModelChoice:
    """A checkpoint file and how the pickers name it."""

    path: Path
    label: str


def available_checkpoints() -> list[ModelChoice]:
    """The shipped model (if present), then each run's ``best.pt``, most recent run first."""
    choices = []
    shipped = shipped_checkpoint()
    if shipped.is_file():
        choices.append(ModelChoice(shipped, f"Shipped model · {shipped.name}"))
    for run in list_runs():
        if run.best is not None:
            score = f", score {run.best_score:.3f}" if run.best_score is not None else ""
            live = " · training" if run.alive else ""
            choices.append(ModelChoice(run.best, f"Run {run.name} · best.pt (epoch {run.best_epoch}{score}){live}"))
    return choices


def inference_device() -> tuple[torch.device, torch.dtype | None]:
    """The device the app runs models on and its autocast dtype (bf16 on CPUs that have it)."""
    device = select_device("auto")
    return device, autocast_dtype(device, "auto")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One version of a checkpoint file: its model (eval mode) and metadata, loaded once per version."""

    path: Path  # resolved
    mtime: float  # changes when a run saves a new version
    model: nn.Module
    meta: dict[str, Any]

    @property
    def version(self) -> tuple[str, float]:
        """``(path, mtime)``: the key of every cache of this version's results."""
        return str(self.path), self.mtime


@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def _load(path: str, mtime: float) -> LoadedModel:
    """One loaded model per file version."""
    return LoadedModel(Path(path), mtime, *load_checkpoint(Path(path), inference_device()[0]))


def confined(path: Path) -> Path:
    """``path`` if it is the shipped model or lies under ``checkpoints/`` or the runs folder, else ``CheckpointError``.

    The pages only offer such files; this also holds for a path that reaches a page another way
    (session state, a link), and a symlink is judged by where it points.
    """
    resolved = Path(path).resolve()
    roots = [DEFAULT_CHECKPOINT.parent.resolve(), runs_root().resolve()]
    if resolved == shipped_checkpoint().resolve() or any(resolved.is_relative_to(root) for root in roots):
        return resolved
    raise CheckpointError(f"{path}: the app loads models only from checkpoints/ and runs/")


def load_model(path: Path) -> LoadedModel:
    """A checkpoint under ``checkpoints/`` or ``runs/``, loaded once per file version.

    ``CheckpointError`` if it can't be used."""
    path = confined(path)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    return _load(str(path), mtime)


def model_summary(meta: dict[str, Any]) -> str:
    """One line: architecture, width, heads, input size and what it was trained on."""
    config = meta["model"]
    parts = [f"{display_name(config['arch'])}, width {config['base_width']}"]
    if config.get("deep_supervision"):
        parts.append(f"{config['depth']} deep-supervision heads")
    size = meta["preprocessing"].get("input_size")
    if size:
        parts.append(f"{size}×{size} input")
    if "epoch" in meta:
        parts.append(f"saved at epoch {meta['epoch']}")
    data = (meta.get("train_config") or {}).get("data")
    if data:
        parts.append("synthetic demo data" if data == SYNTHETIC else f"data {Path(data).name}")
    return " · ".join(parts)


def pick_checkpoint() -> LoadedModel:
    """The sidebar model picker: the chosen checkpoint, loaded; stops the page with a message if there is none."""
    box = st.sidebar
    choices = available_checkpoints()
    if not choices:
        box.info("No model yet: the shipped model is not installed and no run has a best.pt. "
                 "Train one on the Train page (the demo takes about a minute).")
        box.page_link("pages/1_Train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    labels = {str(c.path): c.label for c in choices}
    chosen = persistent_selectbox("Model", list(labels), CHECKPOINT, labels.__getitem__, box)
    try:
        loaded = load_model(Path(chosen))
    except CheckpointError as err:
        box.error(str(err))
        st.stop()
    box.caption(model_summary(loaded.meta))
    return loaded
