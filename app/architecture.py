"""The UNet++ node grid ``x{i}_{j}`` drawn with Plotly, with the nodes of one pruning level lit."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from app.theme import MUTED, PRIMARY, SOFT

Node = tuple[int, int]


def nodes(depth: int = 4) -> list[Node]:
    """Every node ``(i, j)``: ``i`` down-samplings deep, ``j``-th in its row."""
    return [(i, j) for i in range(depth + 1) for j in range(depth + 1 - i)]


def level_nodes(level: int) -> set[Node]:
    """The nodes head ``x0_{level}`` needs: ``i + j <= level`` (the model pruned to that level)."""
    return {(i, j) for i in range(level + 1) for j in range(level + 1 - i)}


def position(node: Node) -> tuple[float, float]:
    """Plot coordinates: the encoder runs down the left, the nested decoders fill the triangle."""
    i, j = node
    return float(i + 2 * j), float(-i)


def edges(depth: int = 4) -> list[tuple[str, Node, Node]]:
    """``(kind, source, target)`` with kind ``down`` (pooling), ``up`` (up-sampling) or ``skip``."""
    out: list[tuple[str, Node, Node]] = []
    for i, j in nodes(depth):
        if j == 0 and i > 0:
            out.append(("down", (i - 1, 0), (i, 0)))
        if j > 0:
            out.append(("up", (i + 1, j - 1), (i, j)))
            out += [("skip", (i, k), (i, j)) for k in range(j)]
    return out


def _segment(kind: str, a: Node, b: Node) -> tuple[list[float], list[float]]:
    """Points of one edge; dense skips that jump over nodes arc above the row."""
    (x0, y0), (x1, y1) = position(a), position(b)
    if kind != "skip" or b[1] - a[1] == 1:
        return [x0, x1, np.nan], [y0, y1, np.nan]
    t = np.linspace(0, 1, 16)
    bump = 0.18 * (b[1] - a[1] - 1) + 0.15
    return [*(x0 + (x1 - x0) * t), np.nan], [*(y0 + bump * np.sin(np.pi * t)), np.nan]


def architecture_figure(level: int, depth: int = 4) -> go.Figure:
    """The node grid with the nodes and connections of ``level`` highlighted, heads on top."""
    lit = level_nodes(level)
    fig = go.Figure()
    styles = {"down": "solid", "up": "solid", "skip": "dot"}
    for active in (False, True):
        for kind in ("down", "up", "skip"):
            xs: list[float] = []
            ys: list[float] = []
            for k, a, b in edges(depth):
                if k == kind and (a in lit and b in lit) == active:
                    px, py = _segment(k, a, b)
                    xs += px
                    ys += py
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                line={"color": PRIMARY if active else SOFT, "width": 2.2 if active else 1.2, "dash": styles[kind]},
            ))
    for j in range(1, depth + 1):
        x, y = position((0, j))
        used = j == level
        fig.add_trace(go.Scatter(
            x=[x, x], y=[y, y + 0.75], mode="lines+markers+text", showlegend=False, hoverinfo="skip",
            text=["", f"L{j}"], textposition="top center",
            marker={"symbol": ["circle", "triangle-up"], "size": [0, 14], "color": PRIMARY if used else MUTED},
            line={"color": PRIMARY if used else SOFT, "width": 2, "dash": "dash"},
            textfont={"color": PRIMARY if used else MUTED, "size": 13},
        ))
    all_nodes = nodes(depth)
    xy = np.array([position(n) for n in all_nodes])
    fig.add_trace(go.Scatter(
        x=xy[:, 0], y=xy[:, 1], mode="markers+text", showlegend=False,
        text=[f"x<sub>{i},{j}</sub>" for i, j in all_nodes], textfont={"color": "white", "size": 12},
        hovertext=[f"x{i}_{j}: {'used' if (i, j) in lit else 'not computed'} at L{level}" for i, j in all_nodes],
        hoverinfo="text",
        marker={"size": 38, "line": {"width": 0},
                "color": [PRIMARY if n in lit else SOFT for n in all_nodes]},
    ))
    fig.update_layout(
        height=400, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="rgba(0,0,0,0)",
        xaxis={"visible": False, "range": [-0.8, 2 * depth + 0.8]},
        yaxis={"visible": False, "range": [-depth - 0.6, 1.5], "scaleanchor": "x", "scaleratio": 1.4},
    )
    return fig
