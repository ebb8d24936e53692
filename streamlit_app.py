"""UNet++ Studio: train, compare and use UNet++ segmentation models.

Run with ``streamlit run streamlit_app.py``. This file is the Home page; the others are in ``pages/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from torch import nn

from app.architecture import architecture_figure, level_nodes, nodes
from app.checkpoints import available_checkpoints, load_model, model_summary, shipped_checkpoint
from app.evaluation import QUALITY_COLUMNS, number_columns
from app.guidance import stored_source
from app.layout import PAGES, setup_page
from core.checkpoint import CheckpointError
from core.complexity import count_parameters
from core.levels import keyed, level_name, parse_level

INTRO = """
**UNet++** (Zhou et al., 2018) is a U-Net whose encoder and decoder are joined by *nested, dense
skip pathways*: node x<sub>i,j</sub> sees every earlier node of its row and an up-sampled node from
below, which narrows the gap between encoder and decoder features.

With **deep supervision**, each top node x<sub>0,1</sub> … x<sub>0,4</sub> has its own output head,
trained together. Any head can then be used alone: the model is **pruned** to that level, dropping
every node the head does not need. Shallow levels are much faster, often for little loss of quality.
"""

PAGE_TEXT = {
    "Train": "Train UNet++ or U-Net on the synthetic demo, Kaggle LGG MRI or your own images; "
             "watch loss, Dice and samples live.",
    "Compare": "Quality, size and speed of each pruning level, and the smallest level worth using.",
    "Segment": "Upload MRI slices or other images and download lesion masks and overlays.",
}


def metrics_table(model: nn.Module, meta: dict[str, Any]) -> pd.DataFrame:
    """The checkpoint's validation metrics per level (from its metadata) and each level's parameters."""
    levels = keyed(meta.get("metrics", {}).get("levels"))
    rows = []
    for level, m in levels.items():
        row = {"level": level_name(level), "parameters": count_parameters(model, parse_level(level)),
               "Dice": m.get("dice"), "IoU": m.get("iou")}
        if "volume_dice_mean" in m:
            row["volume Dice"] = m["volume_dice_mean"]
        if "postprocessed_volume_dice_mean" in m:
            row["post-processed volume Dice"] = m["postprocessed_volume_dice_mean"]
        rows.append(row)
    return pd.DataFrame(rows)


def show_model(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Headline metrics and the per-level table of the default model."""
    st.caption(f"`{path}` · {model_summary(meta)}")
    metrics = meta.get("metrics") or {}
    cols = st.columns(3)
    if "dice" in metrics:
        cols[0].metric("Dice", f"{metrics['dice']:.3f}", help="Mean per validation slice, deepest head")
        cols[1].metric("IoU", f"{metrics['iou']:.3f}")
    if "volume_dice_mean" in metrics:
        cols[2].metric("Volume Dice", f"{metrics['volume_dice_mean']:.3f}",
                       help="Dice over each patient's stack of slices, averaged over patients")
    if metrics:
        post = metrics.get("postprocessed_volume_dice_mean")
        st.caption(stored_source(meta).capitalize() + "."
                   + (f" With the model's post-processing rule (used by Segment and core.predict), volume Dice "
                      f"{post:.3f}." if post is not None else ""))
    table = metrics_table(model, meta)
    if not table.empty:
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config=number_columns(("parameters", *QUALITY_COLUMNS), digits=3))


def home() -> None:
    """The Home page: what UNet++ is, the default model, and the way to each page."""
    st.title("UNet++ Studio")
    text, figure = st.columns([2, 3], gap="large")
    with text:
        st.markdown(INTRO, unsafe_allow_html=True)
        level = st.segmented_control("Highlight a pruning level", [1, 2, 3, 4], default=4, required=True,
                                     format_func=level_name)
        st.caption(f"L{level} computes {len(level_nodes(level))} of {len(nodes())} nodes: "
                   "the lit ones. Dotted arcs are the dense skips, triangles the supervised heads.")
    figure.plotly_chart(architecture_figure(level), key="architecture", config={"displayModeBar": False})

    st.subheader("Model")
    shipped = shipped_checkpoint()
    try:
        if shipped.is_file():
            loaded = load_model(shipped)
            show_model(shipped, loaded.model, loaded.meta)
        else:
            st.info(f"The shipped model `{shipped.name}` is not installed yet. Until it is, the pages use "
                    "the best model of your training runs.", icon=":material/info:")
            choices = available_checkpoints()
            if choices:
                loaded = load_model(choices[0].path)
                st.markdown(f"Using **{choices[0].label}**")
                show_model(choices[0].path, loaded.model, loaded.meta)
            else:
                st.markdown("No run has a model yet: start the demo training on the Train page, it needs no data.")
    except CheckpointError as err:
        st.error(str(err))

    st.subheader("Pages")
    for col, (script, label, icon) in zip(st.columns(3), PAGES[1:]):
        col.page_link(script, label=label, icon=icon)
        col.caption(PAGE_TEXT[label])


setup_page("Home")
home()
