"""Plotly figures of training histories, evaluation results and probability maps."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.theme import MUTED, PRIMARY, level_color
from core.levels import deepest, deepest_key, is_ensemble, level_name
from core.training.history import Event

RUN_METRICS = {  # label -> value of an epoch event
    "validation score": lambda e: e.get("score"),
    "validation Dice": lambda e: e["val"].get("dice"),
    "validation IoU": lambda e: e["val"].get("iou"),
    "validation loss": lambda e: e.get("val_loss"),
    "training loss": lambda e: e.get("train_loss"),
}


def _layout(fig: go.Figure, title: str, height: int = 300, **kwargs: Any) -> go.Figure:
    """Title on the first line, legend on the second at the left: Plotly's toolbar (top right) covers neither."""
    fig.update_layout(
        title={"text": title, "font": {"size": 15}, "x": 0, "xanchor": "left", "xref": "paper",
               "y": 1, "yanchor": "top", "yref": "container", "pad": {"t": 8}},
        height=height, hovermode="x unified", margin={"l": 10, "r": 10, "t": 62, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0}, **kwargs,
    )
    return fig


def _epoch_axis(fig: go.Figure, epochs: int) -> go.Figure:
    """Whole-number epoch ticks."""
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, round(epochs / 8)))
    return fig


def _of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.get("event") == kind]


def global_steps(events: list[Event]) -> np.ndarray:
    """Step events' position counted from the start of training (epochs x steps per epoch)."""
    return np.array([(e["epoch"] - 1) * e["steps"] + e["step"] for e in _of(events, "step")])


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    n = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(len(values)) + 1 - n]) / n


def step_loss_figure(events: list[Event]) -> go.Figure:
    """Training loss of every step, with a moving average."""
    steps = _of(events, "step")
    x, loss = global_steps(events), np.array([e["loss"] for e in steps], dtype=float)
    fig = go.Figure([
        go.Scatter(x=x, y=loss, mode="lines", name="step", line={"color": MUTED, "width": 1}),
        go.Scatter(x=x, y=moving_average(loss, max(5, len(loss) // 20)), mode="lines", name="average",
                   line={"color": PRIMARY, "width": 2.5}),
    ])
    return _layout(fig, "Step loss", xaxis_title="step", yaxis_title="loss")


def epoch_loss_figure(events: list[Event]) -> go.Figure:
    """Training and validation loss per epoch."""
    epochs = _of(events, "epoch")
    x = [e["epoch"] for e in epochs]
    fig = go.Figure([
        go.Scatter(x=x, y=[e["train_loss"] for e in epochs], mode="lines+markers", name="training",
                   line={"color": MUTED}),
        go.Scatter(x=x, y=[e["val_loss"] for e in epochs], mode="lines+markers", name="validation",
                   line={"color": PRIMARY}),
    ])
    return _epoch_axis(_layout(fig, "Loss per epoch", yaxis_title="loss"), len(x))


def quality_figure(events: list[Event]) -> go.Figure:
    """Validation Dice and IoU per epoch, one line per deep-supervision head and the ensemble."""
    epochs = _of(events, "epoch")
    fig = make_subplots(1, 2, horizontal_spacing=0.14)
    levels = list(epochs[-1]["val_levels"]) if epochs else []
    for level in levels:
        x = [e["epoch"] for e in epochs if level in e["val_levels"]]
        for col, metric in ((1, "dice"), (2, "iou")):
            fig.add_trace(go.Scatter(
                x=x, y=[e["val_levels"][level][metric] for e in epochs if level in e["val_levels"]],
                mode="lines+markers", name=level_name(level), legendgroup=level, showlegend=col == 1,
                line={"color": level_color(level), "dash": "dot" if is_ensemble(level) else "solid"},
            ), 1, col)
    _epoch_axis(fig, len(epochs))
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="Dice", col=1)
    fig.update_yaxes(title_text="IoU", col=2)
    fig = _layout(fig, "Validation quality per head", height=320)
    fig.update_layout(legend={"orientation": "v", "y": 0.5, "yanchor": "middle", "x": 1.02, "xanchor": "left"},
                      margin={"r": 90})
    return fig


def lr_figure(events: list[Event]) -> go.Figure:
    """Learning rate per step (log scale)."""
    steps = _of(events, "step")
    fig = go.Figure(go.Scatter(x=global_steps(events), y=[e["lr"] for e in steps], mode="lines",
                               name="learning rate", line={"color": PRIMARY, "shape": "hv"}))
    fig = _layout(fig, "Learning rate", xaxis_title="step", yaxis_type="log", showlegend=False)
    fig.update_yaxes(tickformat=".0e", minor={"showgrid": False})
    rates = [e["lr"] for e in steps if e["lr"] > 0]
    if rates:  # few labels: 1, 2 and 5 per decade within a decade of the values, else one per decade
        lo, hi = np.log10(min(rates)), np.log10(max(rates))
        if hi - lo < 1:
            pad = (1 - (hi - lo)) / 2
            lo, hi = lo - pad, hi + pad
            ticks = [m * 10.0**k for k in range(int(np.floor(lo)), int(np.ceil(hi)) + 1) for m in (1, 2, 5)
                     if lo <= np.log10(m * 10.0**k) <= hi]
            fig.update_yaxes(range=[lo, hi], tickvals=ticks)
        else:
            fig.update_yaxes(dtick=1)
    return fig


def runs_figure(histories: Mapping[str, list[Event]], metric: str) -> go.Figure:
    """One line per run of ``metric`` (a key of ``RUN_METRICS``) per epoch."""
    value = RUN_METRICS[metric]
    fig = go.Figure()
    for name, events in histories.items():
        epochs = _of(events, "epoch")
        fig.add_trace(go.Scatter(x=[e["epoch"] for e in epochs], y=[value(e) for e in epochs],
                                 mode="lines+markers", name=name))
    longest = max((len(_of(events, "epoch")) for events in histories.values()), default=1)
    return _epoch_axis(_layout(fig, f"{metric.capitalize()} per epoch", height=340, yaxis_title=metric), longest)


def quality_latency_figure(rows: Mapping[str, Mapping[str, float]], metric: str, metric_label: str) -> go.Figure:
    """Each level as a point: latency (x) against ``metric`` (y), marker area ~ parameters."""
    fig = go.Figure()
    largest = max(r["params"] for r in rows.values())
    for level, row in rows.items():
        ensemble = is_ensemble(level)  # as large and about as slow as the deepest head: a ring, labelled below it
        fig.add_trace(go.Scatter(
            x=[row["ms_per_image"]], y=[row[metric]], mode="markers+text", name=level_name(level),
            text=[level_name(level)], textposition="bottom center" if ensemble else "top center",
            marker={"size": (10 if ensemble else 14) + 30 * np.sqrt(row["params"] / largest),
                    "color": "rgba(0, 0, 0, 0)" if ensemble else level_color(level),
                    "line": {"width": 3, "color": level_color(level)} if ensemble else {"width": 1, "color": "white"}},
            hovertemplate=f"{level_name(level)}<br>%{{x:.2f}} ms per image<br>{metric_label} %{{y:.4f}}"
                          f"<br>{row['params']:,} parameters<extra></extra>",
        ))
    fig.update_layout(hovermode="closest", showlegend=False)
    return _layout(fig, f"{metric_label} against latency", height=380,
                   xaxis_title="ms per image on this machine", yaxis_title=metric_label)


def cost_figure(rows: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """Parameters, FLOPs and latency of each level as a share of the deepest head's."""
    top = deepest(rows)
    levels = list(rows)
    fig = go.Figure([
        go.Bar(x=[level_name(k) for k in levels], y=[100 * rows[k][key] / top[key] for k in levels], name=label,
               marker_color=color, hovertemplate=f"{label}: %{{y:.1f}} %<extra></extra>")
        for key, label, color in (("params", "parameters", "#94c9c0"), ("flops", "FLOPs", "#1f7f73"),
                                  ("ms_per_image", "latency", "#d97706"))
    ])
    fig.update_layout(barmode="group", hovermode="x unified")
    return _layout(fig, f"Cost against {level_name(deepest_key(rows))}", height=380,
                   yaxis_title="% of the deepest head", yaxis_ticksuffix=" %")


PROBABILITY_SCALE = [  # transparent where p is low, so the anatomy shows through; opaque yellow at p = 1
    [0.0, "rgba(40, 11, 84, 0)"], [0.1, "rgba(40, 11, 84, 0)"], [0.25, "rgba(120, 28, 109, 0.55)"],
    [0.5, "rgba(237, 105, 37, 0.8)"], [1.0, "rgba(252, 255, 164, 0.95)"],
]


def probability_figure(prob: np.ndarray, image: np.ndarray | None = None, title: str = "Lesion probability") -> go.Figure:
    """A ``(H, W)`` probability map over the grey anatomy ``image`` (``(H, W)`` or ``(H, W, C)`` uint8).

    Probabilities under 0.1 are transparent, so an empty prediction shows the image itself.
    """
    fig = go.Figure()
    if image is not None:
        grey = image if image.ndim == 2 else image[..., min(1, image.shape[2] - 1)]
        fig.add_trace(go.Image(z=np.repeat(grey[..., None], 3, axis=2), hoverinfo="skip"))
    fig.add_trace(go.Heatmap(z=prob, zmin=0, zmax=1, colorscale=PROBABILITY_SCALE,
                             colorbar={"title": {"text": "p"}, "thickness": 12},
                             hovertemplate="x %{x}, y %{y}<br>p = %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", visible=False)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_layout(hovermode="closest", plot_bgcolor="black")
    return _layout(fig, f"{title} (max {float(prob.max()) if prob.size else 0.0:.2f})", height=440)


def lesion_area_figure(rows: list[dict[str, Any]], current: int) -> go.Figure:
    """Lesion area per slice (mm² where the spacing is known, else pixels), the shown slice marked."""
    in_mm2 = rows and rows[0]["lesion_mm2"] is not None
    values = [r["lesion_mm2"] if in_mm2 else r["lesion_pixels"] for r in rows]
    slices = [r["slice"] for r in rows]
    colors = [PRIMARY if s == current else MUTED for s in slices]
    fig = go.Figure(go.Bar(x=slices, y=values, marker_color=colors,
                           hovertemplate="slice %{x}<br>%{y:,.1f}" + (" mm²" if in_mm2 else " px") + "<extra></extra>"))
    return _layout(fig, "Lesion area by slice", height=320, xaxis_title="slice",
                   yaxis_title="lesion area (mm²)" if in_mm2 else "lesion area (pixels)", showlegend=False)
