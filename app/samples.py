"""A run's validation slices as its latest checkpoint segments them (refreshed each epoch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from app.checkpoints import inference_device, load_model
from app.data import load_split, resolve_source, spread_examples, window_items
from app.images import enlarge, overlay, strip, truth_overlay
from core.inference import predict_images, probabilities_to_mask
from core.levels import default_level


@st.cache_data(max_entries=8, show_spinner=False)
def sample_predictions(checkpoint: str, mtime: float, count: int = 3) -> list[np.ndarray]:
    """``count`` validation slices of the checkpoint's run, each a strip: image, truth, prediction.

    ``mtime`` keys the cache: a run rewrites ``last.pt`` every epoch.
    """
    del mtime  # only part of the cache key
    loaded = load_model(Path(checkpoint))
    model, pre, split = loaded.model, loaded.meta["preprocessing"], loaded.meta["split"]
    val = load_split(resolve_source(split["data"]), pre.get("input_size"), model.in_channels, model.num_classes,
                     "val", tuple(split["val"]), pre.get("intensity", "none"), window_items(pre),
                     pre.get("axis", "axial"))
    examples = spread_examples(val, count)
    level = default_level(model)
    probs = predict_images(model, examples.images, pre, level, inference_device()[1])
    return [
        strip([enlarge(image, 160), enlarge(truth_overlay(image, mask), 160),
               enlarge(overlay(image, probabilities_to_mask(p)), 160)])
        for image, mask, p in zip(examples.images, examples.masks, probs)
    ]
