"""Train page: start a training process, watch it live, stop or resume it, and compare runs."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from app.charts import RUN_METRICS, runs_figure
from app.data import resolve_source
from app.layout import setup_page
from app.runview import STATUS, live_run, render_run
from app.state import RUN, persistent_selectbox
from core.data import SYNTHETIC, data_folder  # data_folder: the one layout detection, as load_source uses it
from core.models import ARCHITECTURES, display_name
from core.runs import RunError, RunInfo, launch, list_runs, read_run_history, run_folder
from core.training.config import TrainConfig, cli_fields, default_of

DEMO = "Synthetic demo (no download)"
SOURCES = [DEMO, "Data folder (its layout is detected)"]  # by core.data, as load_source reads it
NEW_NAME = "_new_run_name"
DEFAULTS = TrainConfig()
RECIPE = {  # TrainConfig field -> label on this page; help, choices and defaults come from the field
    "intensity": "Intensity", "augment": "Augmentation", "schedule": "Schedule", "sampling": "Sampling",
    "warmup": "Warm-up share", "ema": "Weight average (EMA)", "distill": "Self-distillation",
    "coarse_share": "Half-size share", "loss": "Loss", "axis": "Slicing plane (NIfTI)",
}


def fresh_name() -> str:
    """A run name that sorts by time: ``run-20250101-120000``."""
    return time.strftime("run-%Y%m%d-%H%M%S")


def data_source(label: str, path: str) -> str:
    """The ``--data`` of the chosen source; ``DataError`` if the folder is not in a layout ``core.data`` reads."""
    if label == DEMO:
        return SYNTHETIC
    return str(data_folder(resolve_source(path, Path.cwd())))


def training_threads(running: int) -> int:
    """Torch threads for a run started here: the cores less one, shared with the runs already training.

    The core left free serves this page and the browser that watches it: on a 2-core machine, two
    training threads that keep losing a core to the page's redraws wait on each other and crawl.
    """
    return max(1, ((os.cpu_count() or 1) - 1) // (running + 1))


def recipe_options() -> dict:
    """The recipe's levers (``RECIPE`` fields of ``TrainConfig``), each with its CLI help and default."""
    values = {}
    columns = st.columns(4)
    by_name = {f.name: f for f in cli_fields()}
    for i, f in enumerate(by_name[name] for name in RECIPE):
        box, label, default = columns[i % 4], RECIPE[f.name], default_of(f)
        if f.metadata.get("choices"):
            choices = list(f.metadata["choices"])
            values[f.name] = box.selectbox(label, choices, None if default is None else choices.index(default),
                                           placeholder="follows the data", help=f.metadata["help"])
        else:
            values[f.name] = box.number_input(label, 0.0, 1.0, float(default), 0.005, format="%.3f",
                                              help=f.metadata["help"])
    return values


def new_run_form(expanded: bool) -> None:
    """The form that launches ``python -m core.train`` into ``runs/NAME``."""
    st.session_state.setdefault(NEW_NAME, fresh_name())
    with st.expander("New training run", expanded=expanded, icon=":material/add_circle:"):
        top = st.columns([2, 3, 3])  # outside the form, so that the folder box follows the data choice at once
        name = top[0].text_input("Run name", key=NEW_NAME, help="The folder under runs/ that holds the run")
        source = top[1].selectbox("Data", SOURCES)
        synthetic = source == DEMO
        path = top[2].text_input("Data folder", placeholder="not needed: generated on the fly" if synthetic
                                 else "e.g. data/kaggle_3m", disabled=synthetic,
                                 help="The folder that holds the data, in any layout the trainer reads: kaggle_3m, "
                                      "images/ + masks/, or a NIfTI dataset with a dataset.json (nnU-Net v2 raw or "
                                      "MSD); a folder in none names the layouts expected")
        form = st.form("new_run")
    with form:
        a, b, c, d = st.columns(4)
        arch = a.selectbox("Architecture", list(ARCHITECTURES), format_func=display_name)
        demo = {"width": 8, "size": 64} if synthetic else {"width": DEFAULTS.width, "size": DEFAULTS.size}
        width = b.number_input("Width", 2, 64, demo["width"], help="Filters of the first level (UNet++ paper: 32)")
        deep = c.checkbox("Deep supervision", True, help="UNet++: a head on each x0_j, so it can be pruned")
        size = d.number_input("Input size", 16, 1024, demo["size"], step=16, placeholder="follows the data",
                              help="Slices are resized to size × size pixels. Left empty, it follows the data: the "
                                   "smallest multiple of 32 at which the masks survive the resize (128 for LGG MRI)")
        a, b, c, d = st.columns(4)
        if synthetic:  # the demo: a few quick epochs
            epochs, budget = a.number_input("Epochs", 1, 500, 10), None
        else:  # real data: the whole schedule is laid over the minutes the user has
            epochs, budget = DEFAULTS.epochs, a.number_input(
                "Minutes", 0.1, 10_000.0, 20.0, 5.0, format="%.1f", help="Time budget: warm-up, learning-rate decay and the end of training "
                                               "are laid over these minutes of wall time, so the run ends finished")
        batch = b.number_input("Batch size", 1, 128, DEFAULTS.batch_size)
        lr = c.number_input("Learning rate", 1e-5, 1.0, DEFAULTS.lr, step=1e-4, format="%.4f",
                            help="The peak learning rate (after the warm-up)")
        alpha = d.slider("Loss alpha", 0.0, 1.0, DEFAULTS.alpha, 0.05,
                         help="loss = alpha · BCE + (1 − alpha) · soft Dice")
        with st.expander("Recipe", icon=":material/tune:"):
            recipe = recipe_options()
        submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")
    if not submitted:
        return
    try:
        folder = run_folder(name)
        running = sum(r.alive for r in list_runs())
        config = TrainConfig(data=data_source(source, path), arch=arch, width=width, deep_supervision=deep,
                             epochs=epochs, budget_minutes=budget, batch_size=batch, lr=lr, size=size, alpha=alpha,
                             threads=training_threads(running), **recipe)
        launch(folder, config)
    except (ValueError, RunError) as err:
        st.error(str(err))
        return
    st.session_state[RUN] = name
    del st.session_state[NEW_NAME]  # the next run gets a new default name
    st.toast(f"Run {name} started", icon=":material/rocket_launch:")
    st.rerun()


def run_row(run: RunInfo) -> dict:
    """One line of the runs table."""
    row = {"run": run.name, "status": STATUS[run.status][0].split(":")[0], "architecture": "", "width": None,
           "size": None, "data": ""}
    if run.config:
        data = run.config.data
        row |= {"architecture": display_name(run.config.arch), "width": run.config.width, "size": run.config.size,
                "data": "synthetic" if data == SYNTHETIC else Path(data).name}
    return row | {"epochs": f"{run.epoch}/{run.epochs}" if run.epochs else str(run.epoch or ""),
                  "best score": run.best_score,
                  "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started))}


def runs_overview(runs: list[RunInfo]) -> None:
    """Every run in a table, and chosen runs overlaid on one chart."""
    st.subheader("All runs")
    st.dataframe(pd.DataFrame([run_row(r) for r in runs]), hide_index=True, width="stretch",
                 column_config={"best score": st.column_config.NumberColumn(
                     format="%.3f", help="What best.pt keeps: validation volume Dice where the data has volumes, "
                                         "else Dice")})
    names = [r.name for r in runs]
    left, right = st.columns([3, 1])
    chosen = left.multiselect("Overlay runs", names, default=names[: min(3, len(names))])
    metric = right.selectbox("Metric", list(RUN_METRICS))
    paths = {r.name: r.path for r in runs}
    histories = {n: read_run_history(paths[n]) for n in chosen}
    if any(e.get("event") == "epoch" for events in histories.values() for e in events):
        st.plotly_chart(runs_figure(histories, metric), key="chart_runs")
    else:
        st.caption("The chart fills in once a chosen run has finished an epoch.")


setup_page("Train")
st.title("Train")
runs = list_runs()
new_run_form(expanded=not runs)
if not runs:
    st.info("No runs yet. The defaults train a small UNet++ on synthetic phantoms in under a minute on a laptop.")
    st.stop()
by_name = {r.name: r for r in runs}
if st.session_state.get(RUN) not in by_name:
    st.session_state[RUN] = next((r.name for r in runs if r.alive), runs[0].name)
name = persistent_selectbox("Run", list(by_name), RUN,
                            lambda n: f"{n} · {STATUS[by_name[n].status][0].split(':')[0]}")
run = by_name[name]
others = [r.name for r in runs if r.alive and r.name != name]
if others:
    st.caption(f"Also training now: {', '.join(others)} (runs share this machine's processors).")
if run.alive:
    live_run(run.path)
else:
    render_run(run.path)
st.divider()
runs_overview(runs)
