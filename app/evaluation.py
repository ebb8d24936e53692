"""Per-level evaluation for the Compare page: run it with a progress bar, tabulate it, recommend a level."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import torch
from torch import nn

from app.checkpoints import LoadedModel, inference_device
from app.compute import inference_turn
from core.complexity import count_flops, count_parameters, measure_latency
from core.data import SliceSet
from core.evaluation import evaluate_model
from core.inference import predict_images_by_level, probabilities_to_mask
from core.levels import deepest, heads, level_key, level_name, model_levels
from core.metrics import class_columns, dice_score, headline

TOLERANCE = 0.01  # one Dice point


def evaluate_with_progress(model: nn.Module, meta: dict[str, Any], slices: SliceSet) -> dict[str, Any]:
    """``core.evaluation.evaluate_model`` on every level, driving an ``st.progress`` bar."""
    bar = st.progress(0.0, text=f"Segmenting {len(slices)} images with every head…")

    def report(fraction: float, stage: str) -> None:
        text = f"Segmenting {len(slices)} images with every head…" if stage == "segmenting" else stage.capitalize()
        bar.progress(min(1.0, fraction), text=text)

    result = evaluate_model(model, meta, slices, dtype=inference_device()[1], progress=report)
    bar.empty()
    return result


TIMING_REPEATS = 10


@st.cache_data(max_entries=8, show_spinner="Timing each level on this machine…",
               hash_funcs={LoadedModel: lambda loaded: loaded.version})
def measure_levels(loaded: LoadedModel, repeats: int = TIMING_REPEATS) -> dict[str, dict[str, float]]:
    """Parameters, FLOPs and latency (median ms of ``repeats`` single-image passes) of every level, measured here.

    Needs no data: the passes run on random input at the checkpoint's input size. Cached per checkpoint version.
    """
    model = loaded.model
    size = loaded.meta["preprocessing"].get("input_size") or 256
    dtype = inference_device()[1]
    out = {}
    for level in model_levels(model):
        with inference_turn():  # timed alone: other sessions' passes would inflate it
            ms = measure_latency(model, level, size, 1, dtype, repeats=repeats)
        out[level_key(level)] = {"params": count_parameters(model, level), "flops": count_flops(model, level, size),
                           "ms_per_image": ms}
    return out


def headline_metric(result: dict[str, Any]) -> tuple[str, str]:
    """``(key, label)`` of the score an evaluation's levels are judged by (``core.metrics.headline``)."""
    return headline(result["levels"].values())


def recommend(result: dict[str, Any], tolerance: float = TOLERANCE) -> str | None:
    """The smallest head whose score is within ``tolerance`` of the deepest head's; None for one head."""
    key, _ = headline_metric(result)
    rows = result["levels"]
    found = heads(rows)
    if len(found) < 2:
        return None
    target = rows[found[-1]][key]
    return next(level_key(level) for level in found if rows[level][key] >= target - tolerance)


QUALITY_COLUMNS = ("Dice", "IoU", "volume Dice", "post-processed volume Dice")
NUMBER_FORMATS = {"parameters": "localized", "GFLOPs": "%.3f", "ms per image": "%.2f", "speed-up": "%.1f×"} | {
    column: "%.4f" for column in QUALITY_COLUMNS}
COLUMN_HELP = {"post-processed volume Dice": "Volume Dice under the model's own post-processing rule (threshold, "
               "small 3D components dropped, flip average), as Segment and core.predict apply it; None where a "
               "level has no rule of its own (the ensemble)"}


def number_columns(columns: Sequence[str] = tuple(NUMBER_FORMATS), digits: int | None = None) -> dict[str, Any]:
    """``st.dataframe`` column settings for the metric tables' ``columns``: each one's number format (quality
    to ``digits`` decimals where given) and help."""
    def format_of(column: str) -> str:
        return f"%.{digits}f" if digits is not None and column in QUALITY_COLUMNS else NUMBER_FORMATS[column]
    return {c: st.column_config.NumberColumn(format=format_of(c), help=COLUMN_HELP.get(c)) for c in columns}


def results_table(result: dict[str, Any], class_names: Sequence[str] = ()) -> pd.DataFrame:
    """One row per level: size, cost, speed and quality, speed-up against the deepest head; for a
    multi-class model also the (volume) Dice of each class, under ``class_names`` (background first)."""
    rows = result["levels"]
    top = deepest(rows)
    table = pd.DataFrame({
        "level": [level_name(k) for k in rows],
        "parameters": [r["params"] for r in rows.values()],
        "GFLOPs": [r["flops"] / 1e9 for r in rows.values()],
        "ms per image": [r["ms_per_image"] for r in rows.values()],
        "speed-up": [top["ms_per_image"] / r["ms_per_image"] for r in rows.values()],
        "Dice": [r["dice"] for r in rows.values()],
        "IoU": [r["iou"] for r in rows.values()],
    })
    if all("volume_dice_mean" in r for r in rows.values()):
        table["volume Dice"] = [r["volume_dice_mean"] for r in rows.values()]
    post = [r.get("postprocessed_volume_dice_mean", (r.get("postprocessed") or {}).get("volume_dice_mean"))
            for r in rows.values()]  # stored estimates, or core.evaluate's score under the checkpoint's rule
    if any(p is not None for p in post):
        table["post-processed volume Dice"] = post
    for key, volume, name in class_columns(rows.values(), class_names):
        table[f"{'volume ' if volume else ''}Dice {name}"] = [r.get(key) for r in rows.values()]
    return table


def head_masks(
    model: nn.Module, meta: dict[str, Any], image: np.ndarray, threshold: float = 0.5,
) -> dict[str, np.ndarray]:
    """Masks of every head (not the ensemble) for one uint8 ``(H, W, C)`` image of a data set, from one forward pass.

    The image is as ``load_source`` gives it (at the model's size, under its intensity policy).
    """
    with inference_turn():
        probs = predict_images_by_level(model, image[None], meta["preprocessing"], heads(model.levels),
                                        inference_device()[1])
    return {k: probabilities_to_mask(p[0], threshold) for k, p in probs.items()}


def slice_dice(mask: np.ndarray, truth: np.ndarray) -> float:
    """Dice of one predicted mask against its ground truth (1.0 when both are empty)."""
    pred, target = (torch.from_numpy((m > 0).astype(np.int64))[None] for m in (mask, truth))
    return dice_score(pred, target).item()
