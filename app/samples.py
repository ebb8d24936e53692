"""A run's validation slices as its latest checkpoint segments them (refreshed each epoch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from app.checkpoints import inference_device, load_model
from app.data import load_slices, resolve_source, validation_examples
from app.images import enlarge, overlay, truth_overlay
from core.inference import predict_images, probabilities_to_mask

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # image, truth overlay, prediction overlay


@st.cache_data(max_entries=8, show_spinner=False)
def sample_predictions(checkpoint: str, mtime: float, count: int = 3) -> list[Sample]:
    """``count`` validation slices of the checkpoint's run: ``(image, truth, prediction)`` pictures.

    ``mtime`` keys the cache: a run rewrites ``last.pt`` every epoch.
    """
    del mtime  # only part of the cache key
    model, meta = load_model(Path(checkpoint))
    pre, split = meta["preprocessing"], meta["split"]
    slices = load_slices(resolve_source(split["data"]), pre.get("input_size"), model.in_channels, model.num_classes)
    examples = validation_examples(slices, split["val"], count)
    level = max(model.levels)
    probs = predict_images(model, examples.images, pre, level, inference_device()[1])
    return [
        (enlarge(image), enlarge(truth_overlay(image, mask)), enlarge(overlay(image, probabilities_to_mask(p))))
        for image, mask, p in zip(examples.images, examples.masks, probs)
    ]
