"""Compare page: quality, size and speed of each pruning level, a slice viewer and a recommendation."""
from __future__ import annotations

from pathlib import Path

import streamlit as st
from torch import nn

from app.charts import cost_figure, quality_latency_figure
from app.checkpoints import pick_checkpoint
from app.data import load_split, resolve_source
from app.evaluation import evaluate_with_progress, head_masks, headline_metric, recommend, results_table, slice_dice
from app.images import agreement, disagreement_share, enlarge, overlay, truth_overlay
from app.layout import setup_page
from app.state import session_cache
from app.theme import level_name
from core.data import SYNTHETIC, DataError, SliceSet

OWN, DEMO, FOLDER = "The model's validation split", "Synthetic demo", "A data folder"
NUMBER_FORMATS = {"parameters": "localized", "GFLOPs": "%.3f", "ms per image": "%.2f", "speed-up": "%.1f×",
                  "Dice": "%.4f", "IoU": "%.4f", "volume Dice": "%.4f"}


def data_choice(meta: dict) -> tuple[str, str, tuple[str, ...]] | None:
    """``(source, split, volumes)`` of the evaluation data the user picks, or None until a folder is given."""
    split = meta.get("split") or {}
    own = resolve_source(split["data"]) if split.get("data") and split.get("val") else None
    options = ([OWN] if own == SYNTHETIC or (own and Path(own).exists()) else []) + [DEMO, FOLDER]
    own_name = "synthetic demo" if own == SYNTHETIC else Path(str(own)).name
    choice = st.radio("Evaluation data", options, horizontal=True, captions=[
        *([f"{len(split['val'])} held-out volumes of {own_name}"] if OWN in options else []),
        "generated brain-like phantoms, every slice", "kaggle_3m or images/ + masks/, every slice",
    ])
    if own and OWN not in options:
        st.caption(f"The model's own data ({own}) is not on this machine.")
    if choice == OWN:
        return own, "val", tuple(split["val"])
    if choice == DEMO:
        return SYNTHETIC, "all", ()
    path = st.text_input("Data folder", placeholder="e.g. data/kaggle_3m")
    return (resolve_source(path, Path.cwd()), "all", ()) if path.strip() else None


def show_results(result: dict) -> None:
    """Recommendation, table and quality-latency chart of an evaluation."""
    key, label = headline_metric(result)
    rows = result["levels"]
    best = recommend(result)
    if best is not None:
        deepest = str(max(int(k) for k in rows if k != "ens"))
        r, d = rows[best], rows[deepest]
        st.success(
            f"**Use {level_name(best)}**, the smallest head within one Dice point (0.01) of {level_name(deepest)}: "
            f"{label} {r[key]:.3f} against {d[key]:.3f}, {d['ms_per_image'] / r['ms_per_image']:.1f}× faster, "
            f"{100 * r['params'] / d['params']:.0f} % of the parameters.", icon=":material/recommend:")
    counts = f"{result['n_images']} images" + (f" of {result['n_volumes']} volumes" if "n_volumes" in result else "")
    st.caption(f"Evaluated on {counts}; latency is the median of 10 single-image passes on this machine.")
    st.dataframe(results_table(result), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format=f) for c, f in NUMBER_FORMATS.items()})
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
    masks = head_masks(model, meta, image)
    pictures = [("Input", image), ("Ground truth", truth_overlay(image, truth))]
    pictures += [(f"{level_name(k)} · Dice {slice_dice(m, truth):.3f}", overlay(image, m)) for k, m in masks.items()]
    if len(masks) > 1:
        share = disagreement_share(list(masks.values()))
        pictures.append((f"Disagreement · {100 * share:.2f} % of pixels", agreement(image, list(masks.values()))))
    for col, (caption, picture) in zip(st.columns(len(pictures)), pictures):
        col.image(enlarge(picture), caption=caption, width="stretch")
    if len(masks) > 1:
        st.caption("Disagreement: teal where every head marks lesion; yellow, orange, red where only 1, 2 or 3 do.")


setup_page("Compare")
st.title("Compare levels")
checkpoint, model, meta = pick_checkpoint()
pre = meta["preprocessing"]
chosen = data_choice(meta)
if chosen is None:
    st.stop()
source, split, volumes = chosen
key = (str(checkpoint), checkpoint.stat().st_mtime, source, split, volumes)
results = session_cache("evaluations")
try:
    slices = load_split(source, pre.get("input_size"), model.in_channels, model.num_classes, split, volumes)
except DataError as err:
    st.error(str(err), icon=":material/error:")
    st.stop()
if st.button(f"Evaluate every level on {len(slices)} images", type="primary", icon=":material/speed:",
             disabled=key in results):
    results[key] = evaluate_with_progress(model, meta, slices)
if key not in results:
    st.info("Evaluating segments every image with all heads and times each level on this machine.",
            icon=":material/info:")
    st.stop()
show_results(results[key])
slice_viewer(model, meta, slices)
