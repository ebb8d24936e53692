"""Compare page: quality, size and speed of each pruning level, a slice viewer and a recommendation.

Quality comes from two places, always named: the validation metrics stored in the checkpoint (the
model's own held-out data, measured when it was saved) and evaluations run here on data the user
picks. Latency is always measured on this machine. A level is recommended only from the model's
own validation data, unless the user asks for a recommendation from other data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from torch import nn

from app.charts import cost_figure, quality_latency_figure
from app.checkpoints import LoadedModel, pick_checkpoint
from app.data import load_split, resolve_source, window_items
from app.evaluation import (
    TIMING_REPEATS, evaluate_with_progress, head_masks, headline_metric, measure_levels, number_columns, recommend,
    results_table, slice_dice,
)
from app.guidance import data_name, stored_levels, stored_metric, stored_source
from app.images import agreement, anatomy, disagreement_share, enlarge, overlay, truth_overlay
from app.layout import setup_page
from app.state import session_cache
from core.data import SYNTHETIC, DataError, SliceSet
from core.levels import deepest_key, heads, level_name

OWN, DEMO, FOLDER = "The model's validation split", "Synthetic phantoms", "A data folder"


def recommendation(result: dict[str, Any], where: str) -> None:
    """The smallest level within one Dice point of the deepest head, saying which data it comes from."""
    best = recommend(result)
    if best is None:
        return
    key, label = headline_metric(result)
    rows = result["levels"]
    deepest = deepest_key(rows)
    r, d = rows[best], rows[deepest]
    if best == deepest:
        next_head = heads(rows)[-2]
        below = rows[next_head]
        st.success(f"**Keep {level_name(deepest)}** {where}: no smaller head comes within one Dice point (0.01) of it "
                   f"({level_name(next_head)}: {label} {below[key]:.3f} against {d[key]:.3f}).")
        return
    speed_up = d["ms_per_image"] / r["ms_per_image"]
    timed = (f"{speed_up:.1f}× faster here" if speed_up >= 1.05  # timings on a busy machine can invert
             else "not measurably faster on this machine now (see ms per image below)")
    st.success(
        f"**Use {level_name(best)}**, the smallest head within one Dice point (0.01) of {level_name(deepest)} "
        f"{where}: {label} {r[key]:.3f} against {d[key]:.3f}, {100 * r['flops'] / d['flops']:.0f} % of the FLOPs "
        f"and {100 * r['params'] / d['params']:.0f} % of the parameters, {timed}.")


def stored_section(loaded: LoadedModel) -> None:
    """The checkpoint's stored validation metrics per level, next to latency measured live here."""
    meta = loaded.meta
    st.subheader("Validation metrics stored in the checkpoint")
    cost = measure_levels(loaded)
    levels = stored_levels(meta)
    size = meta["preprocessing"].get("input_size") or 256
    timing = (f"Parameters, GFLOPs and ms per image: measured on this machine now (median of {TIMING_REPEATS} "
              f"single-image passes at {size}×{size}).")
    if not levels:
        st.caption(f"This checkpoint stores no validation metrics. {timing}")
        st.dataframe(results_table({"levels": cost}), hide_index=True, width="stretch",
                     column_config=number_columns(("parameters", "GFLOPs", "ms per image", "speed-up")))
        return
    rows = {k: {**{m: v for m, v in levels[k].items() if not m.startswith("n_")}, **cost[k]}
            for k in cost if k in levels}
    result = {"levels": rows}
    source = stored_source(meta)
    recommendation(result, f"on the model's own validation data ({source})")
    st.caption(f"Dice, IoU and volume Dice: **{source}**, measured when the model was saved, not here. {timing}")
    st.dataframe(results_table(result), hide_index=True, width="stretch",
                 column_config=number_columns())
    key, label = stored_metric(rows)
    left, right = st.columns(2)
    left.plotly_chart(quality_latency_figure(rows, key, f"stored validation {label}"), key="stored_quality_latency")
    right.plotly_chart(cost_figure(rows), key="stored_cost")


def data_choice(meta: dict) -> tuple[str, str, tuple[str, ...], str] | None:
    """``(source, split, volumes, description)`` of the data the user picks, or None until a folder is given."""
    split = meta.get("split") or {}
    own = resolve_source(split["data"]) if split.get("data") and split.get("val") else None
    options = ([OWN] if own == SYNTHETIC or (own and Path(own).exists()) else []) + [DEMO, FOLDER]
    choice = st.radio("Evaluation data", options, horizontal=True, captions=[
        *([f"{len(split['val'])} held-out volumes of {data_name(own)}"] if OWN in options else []),
        "generated brain-like phantoms, every slice", "kaggle_3m or images/ + masks/, every slice",
    ])
    if own and OWN not in options:
        st.caption(f"The model's own data ({own}) is not on this machine, so its validation split cannot be "
                   "re-evaluated here; the stored metrics above are its results on it.")
    if choice == OWN:
        return own, "val", tuple(split["val"]), f"the model's own held-out validation split ({data_name(own)})"
    if choice == DEMO:
        return SYNTHETIC, "all", (), "synthetic phantoms (generated brain-like images, every slice)"
    path = st.text_input("Data folder", placeholder="e.g. data/kaggle_3m")
    if not path.strip():
        return None
    source = resolve_source(path, Path.cwd())
    return source, "all", (), f"every slice of {source}"


def trained_on(meta: dict) -> str | None:
    """The data source the model was trained on (resolved), if recorded."""
    data = (meta.get("split") or {}).get("data") or (meta.get("train_config") or {}).get("data")
    return resolve_source(data) if data else None


def other_data_note(meta: dict, source: str, split: str) -> str:
    """What results on data other than the model's held-out split mean."""
    own = trained_on(meta)
    if own == source:
        return (f"This is the data the model was trained on ({data_name(own)}), every slice, including the "
                "training patients: the scores are optimistic.")
    return (f"The model was trained on {data_name(own)}, not on this data: these scores say how it does here, "
            "not how good each level is on its own kind of images.")


def show_results(result: dict, description: str, own: bool, note: str) -> None:
    """Recommendation (own data, or if asked), table and quality-latency chart of an evaluation."""
    key, label = headline_metric(result)
    rows = result["levels"]
    counts = f"{result['n_images']} images" + (f" of {result['n_volumes']} volumes" if "n_volumes" in result else "")
    st.markdown(f"**Results on {description}**: {counts}.")
    if own:
        recommendation(result, "on the model's own validation data, evaluated here")
    else:
        st.caption(note)
        if st.toggle("Recommend a level from these results", value=False,
                     help="Off by default: a level that suffices on other data may not suffice on the model's own"):
            recommendation(result, f"on {description}")
    st.caption(f"Latency is the median of {TIMING_REPEATS} single-image passes on this machine.")
    st.dataframe(results_table(result, meta.get("labels") or ()), hide_index=True, width="stretch",
                 column_config=number_columns())
    left, right = st.columns(2)
    left.plotly_chart(quality_latency_figure(rows, key, label), key="quality_latency")
    right.plotly_chart(cost_figure(rows), key="cost")


def slice_viewer(model: nn.Module, meta: dict, slices: SliceSet) -> None:
    """Input, truth, each head's mask and where the heads disagree, for one chosen slice."""
    st.subheader("One slice, every head")
    only_lesions = st.toggle("Only slices with a lesion", value=bool(slices.positive.any()))
    indices = [i for i in range(len(slices)) if slices.positive[i] or not only_lesions]
    index = st.selectbox("Slice", indices, format_func=lambda i: slices.names[i])
    image, truth = slices.images[index], slices.masks[index]
    grey = anatomy(image)  # the FLAIR channel in grey: the colour composite shows the lesion like a mask would
    masks = head_masks(model, meta, image)
    pictures = [("Input (FLAIR channel)" if image.shape[2] == 3 else "Input", grey),
                ("Ground truth", truth_overlay(grey, truth))]
    pictures += [(f"{level_name(k)} · Dice {slice_dice(m, truth):.3f}", overlay(grey, m)) for k, m in masks.items()]
    if len(masks) > 1:
        share = disagreement_share(list(masks.values()))
        pictures.append((f"Disagreement · {100 * share:.2f} % of pixels", agreement(grey, list(masks.values()))))
    for col, (caption, picture) in zip(st.columns(len(pictures)), pictures):
        col.image(enlarge(picture), caption=caption, width="stretch")
    st.caption("Green: ground truth; red: each head's mask (threshold 0.5). "
               + ("Disagreement: teal where every head marks lesion; yellow, orange, red where only 1, 2 or 3 do."
                  if len(masks) > 1 else ""))


setup_page("Compare")
st.title("Compare levels")
loaded = pick_checkpoint()
model, meta = loaded.model, loaded.meta
pre = meta["preprocessing"]
stored_section(loaded)
st.divider()
st.subheader("Evaluate on data")
chosen = data_choice(meta)
if chosen is None:
    st.stop()
source, split, volumes, description = chosen
key = (*loaded.version, source, split, volumes)
results = session_cache("evaluations")
try:
    slices = load_split(source, pre.get("input_size"), model.in_channels, model.num_classes, split, volumes,
                        pre.get("intensity", "none"), window_items(pre), pre.get("axis", "axial"))
except DataError as err:
    st.error(str(err))
    st.stop()
if st.button(f"Evaluate every level on {len(slices)} images", type="primary", disabled=key in results):
    results[key] = evaluate_with_progress(model, meta, slices)
if key not in results:
    st.caption(f"Evaluating segments every image of {description} with all heads and times each level here.")
    st.stop()
show_results(results[key], description, split == "val", other_data_note(meta, source, split))
slice_viewer(model, meta, slices)
