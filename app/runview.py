"""One run on the Train page: status, controls, progress with ETA, live charts and validation samples."""
from __future__ import annotations

from pathlib import Path

import time

import streamlit as st

from app.charts import epoch_loss_figure, lr_figure, quality_figure, step_loss_figure
from app.samples import sample_predictions
from app.state import CHECKPOINT
from core.checkpoint import CheckpointError
from core.data import DataError
from core.runs import RunError, RunInfo, describe, launch, log_tail, progress, read_run_history, stop
from core.training.config import TrainConfig
from core.training.history import Event

POLL_SECONDS = 3.0  # a redraw costs the server and the browser CPU that a small machine's training needs
RESUMABLE = ("stopped", "time_limit", "failed")  # statuses with epochs left to train
STATUS = {
    "running": ("training", ":material/directions_run:"),
    "completed": ("completed", ":material/check_circle:"),
    "stopped": ("stopped", ":material/stop_circle:"),
    "early_stopping": ("stopped early: no better score for `patience` epochs", ":material/trending_flat:"),
    "time_limit": ("stopped at its time limit", ":material/timer:"),
    "failed": ("ended without finishing: see its log", ":material/error:"),
}


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1 min 15 s"``; ``4000`` -> ``"1 h 06 min"``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def score_name(events: list[Event]) -> str:
    """What a run's score (the one ``best.pt`` keeps) is: ``"volume Dice"`` where the data has volumes, else ``"Dice"``."""
    epochs = [e for e in events if e.get("event") == "epoch"]
    return "volume Dice" if epochs and epochs[-1]["val"].get("volume_dice_mean") is not None else "Dice"


def status_text(run: RunInfo, events: list[Event] | None = None) -> str:
    """``"completed · epoch 5/5 · best volume Dice 0.912 (epoch 5)"``."""
    parts = [STATUS[run.status][0]]
    if run.epochs:
        parts.append(f"epoch {run.epoch}/{run.epochs}")
    elif run.epoch:  # a time-budget run: its epochs are what fits in the budget
        parts.append(f"epoch {run.epoch}")
    if run.best_score is not None:
        parts.append(f"best {score_name(events or [])} {run.best_score:.3f} (epoch {run.best_epoch})")
    return " · ".join(parts)


def training_seconds(events: list[Event], alive: bool, now: float | None = None) -> float:
    """Time spent training over every start and resume of a run (a resume does not restart the clock)."""
    total, start, last = 0.0, None, None
    for event in events:
        if event.get("event") in ("start", "resume"):
            if start is not None and last is not None:
                total += max(0.0, last - start)
            start = event["time"]
        last = event.get("time", last)
    if start is not None:
        end = (time.time() if now is None else now) if alive else last
        total += max(0.0, end - start)
    return total


def progress_line(events: list[Event], alive: bool, now: float | None = None) -> tuple[float, str] | None:
    """``(fraction of all epochs done, text)`` for the progress bar; None before the run starts."""
    starts = [e for e in events if e.get("event") in ("start", "resume")]
    if not starts:
        return None
    epochs, steps = starts[-1]["epochs"], starts[-1]["steps_per_epoch"]
    done = max((e["epoch"] for e in events if e.get("event") == "epoch"), default=0)
    session = events[max(i for i, e in enumerate(events) if e.get("event") in ("start", "resume")):]
    step = max((e["step"] for e in session if e.get("event") == "step" and e["epoch"] == done + 1), default=0)
    seconds = training_seconds(events, alive, now)
    elapsed = format_duration(seconds)
    end = events[-1] if events[-1].get("event") == "end" else None
    budget = starts[-1].get("budget_minutes")
    if budget:  # a time budget: the schedule ends with it, the epochs are what fits
        fraction = min(1.0, seconds / (budget * 60))
        if alive:
            return fraction, (f"Epoch {done + 1} · step {step}/{steps} · {elapsed} of {format_duration(budget * 60)}"
                              f" · about {format_duration(max(0.0, budget * 60 - seconds))} left")
        if end is not None and end.get("reason") == "completed":
            return 1.0, f"{done} epochs in the {format_duration(budget * 60)} budget"
        return fraction, f"Stopped after epoch {done}, {elapsed} of the {format_duration(budget * 60)} budget"
    if alive:
        text = f"Epoch {min(done + 1, epochs)}/{epochs} · step {step}/{steps} · {elapsed} elapsed"
        p = progress(events, now)
        if p is not None and p.eta is not None and step:
            text += f" · about {format_duration(p.eta)} left"
        return min(1.0, (done + step / steps) / epochs), text
    if end is not None and end.get("reason") in ("completed", "early_stopping"):
        return done / epochs if end["reason"] != "completed" else 1.0, f"{done} of {epochs} epochs in {elapsed}"
    text = f"Stopped after epoch {done} of {epochs} ({elapsed} of training)"
    if step:
        text += f"; epoch {done + 1} had reached step {step}/{steps}: Resume trains it again from its start"
    return done / epochs, text


def _progress_bar(events: list[Event], alive: bool) -> None:
    line = progress_line(events, alive)
    if line is None:
        if alive:
            st.progress(0.0, text="Starting: loading the data and building the model…")
        return
    st.progress(*line)


def _metrics(events: list[Event]) -> None:
    epochs = [e for e in events if e.get("event") == "epoch"]
    if not epochs:
        return
    last, scored = epochs[-1], [e for e in epochs if e["score"] is not None]
    validated = [e for e in epochs if e["val"]]  # none when the run trains on every volume (--val-fraction 0)
    cols = st.columns(4)
    if not validated:
        cols[0].caption("No validation metrics: this run holds out no volumes (it trains on all of them).")
    else:
        dice, iou = [e["val"]["dice"] for e in validated], [e["val"]["iou"] for e in validated]
        trend = len(validated) > 1
        cols[0].metric("Validation Dice", f"{dice[-1]:.3f}", f"{dice[-1] - dice[-2]:+.3f}" if trend else None,
                       chart_data=dice if trend else None,
                       help="Of the deepest head, mean over validation slices (an empty slice predicted empty "
                            "scores 1)")
        cols[1].metric("Validation IoU", f"{iou[-1]:.3f}", f"{iou[-1] - iou[-2]:+.3f}" if trend else None,
                       chart_data=iou if trend else None)
    if scored:
        best = max(scored, key=lambda e: e["score"])
        name = score_name(events)
        cols[2].metric(
            f"Best {name} (epoch {best['epoch']})", f"{best['score']:.3f}",
            help="What best.pt keeps. Volume Dice stacks each patient's slices into one volume and averages over "
                 "patients; it is usually lower than the per-slice Dice beside it, which counts every empty slice "
                 "predicted empty as a perfect 1." if name == "volume Dice" else "What best.pt keeps")
    cols[3].metric("Learning rate", f"{last['lr']:.1e}")


def _charts(events: list[Event]) -> None:
    has_steps = any(e.get("event") == "step" for e in events)
    has_epochs = any(e.get("event") == "epoch" for e in events)
    if not has_steps:
        return
    left, right = st.columns(2)
    left.plotly_chart(step_loss_figure(events), key="chart_step_loss")
    right.plotly_chart(lr_figure(events), key="chart_lr")
    if not has_epochs:
        st.caption("Loss, Dice and IoU per epoch appear when the first epoch ends.")
        return
    left, right = st.columns([2, 3])
    left.plotly_chart(epoch_loss_figure(events), key="chart_epoch_loss")
    right.plotly_chart(quality_figure(events), key="chart_quality")


def _samples(run: RunInfo) -> None:
    if run.last is None:
        return
    checkpoint = run.last
    try:
        samples = sample_predictions(str(checkpoint), checkpoint.stat().st_mtime)
    except (CheckpointError, DataError, KeyError, OSError) as err:
        st.caption(f"No validation samples: {err}")
        return
    st.markdown(f"**Validation samples** (last.pt, epoch {run.epoch})")
    for col, sample in zip(st.columns(len(samples)), samples):
        col.image(sample, caption="image · truth (green) · prediction (red)", width="stretch")


def _resume(run: RunInfo) -> None:
    """Relaunch a stopped run from its last.pt with its own settings."""
    try:
        launch(run.path, TrainConfig(**{**run.config.to_dict(), "resume": True}))
    except RunError as err:
        st.error(str(err))
    else:
        st.rerun()


def controls(run: RunInfo) -> None:
    """Stop, resume, download best.pt and hand the model to the other pages."""
    row = st.container(horizontal=True, vertical_alignment="center")
    if run.alive and row.button("Stop", icon=":material/stop:", help="Ends after the current step; last.pt is kept"):
        stop(run.path)
        st.toast(f"Stopping {run.name}: it saves last.pt and exits", icon=":material/stop_circle:")
    resumable = run.status in RESUMABLE and run.last is not None and run.config is not None
    if resumable and row.button("Resume", icon=":material/play_arrow:", help="Continue from last.pt"):
        _resume(run)
    if run.best is None:
        return
    best = run.best
    row.download_button("best.pt", data=best.read_bytes, file_name=f"{run.name}_best.pt",
                        mime="application/octet-stream", icon=":material/download:", on_click="ignore")
    if row.button("Use this model", icon=":material/check:", help="Preselect it on the Compare and Segment pages"):
        st.session_state[CHECKPOINT] = str(best)
    if st.session_state.get(CHECKPOINT) == str(best):
        row.page_link("pages/2_Compare.py", label="Compare its levels", icon=":material/compare:")
        row.page_link("pages/3_Segment.py", label="Segment with it", icon=":material/brush:")


def render_run(path: Path) -> RunInfo:
    """Everything about the run in ``path`` as it is now; returns its current state."""
    events = read_run_history(path)
    run = describe(path, events=events)
    st.markdown(f"{STATUS[run.status][1]} **{run.name}**: {status_text(run, events)}")
    controls(run)
    _progress_bar(events, run.alive)
    if run.status == "failed":
        st.error("The training process ended before finishing. The end of its log:", icon=":material/error:")
        st.code(log_tail(path) or "(the log is empty)", language=None)
    _metrics(events)
    _charts(events)
    _samples(run)
    return run


@st.fragment(run_every=POLL_SECONDS)
def live_run(path: Path) -> None:
    """``render_run`` every ``POLL_SECONDS``; reruns the whole page once the run ends."""
    if not render_run(path).alive:
        st.rerun(scope="app")
