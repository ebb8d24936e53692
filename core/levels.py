"""Pruning levels: the one place that knows what a level is, how it is named and which is the default.

A *level* is a deep-supervision head ``1..depth`` (``int``) or the ensemble, the mean of every
head (``ENSEMBLE``). Per-level results (validation metrics, evaluations, charts) are dicts keyed by
``level_key(level)``: ``"1"``.. ``"4"`` and ``"ens"``, the same in memory, in ``history.jsonl``, in
JSON results and in checkpoints. Checkpoints written before this rule keyed heads by ``int``;
``keyed`` reads both.

Example:
    >>> parse_level("3"), parse_level("ensemble"), level_key(3), level_name(3), level_name(ENSEMBLE)
    (3, 'ens', '3', 'L3', 'ensemble')
    >>> short_name(3), short_name(ENSEMBLE)
    ('L3', 'ens')
    >>> metrics = {1: {"dice": 0.5}, 4: {"dice": 0.8}, "ens": {"dice": 0.7}}  # an old checkpoint's keys
    >>> deepest_key(keyed(metrics)), deepest(metrics)
    ('4', {'dice': 0.8})
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from torch import nn

Level = int | str  # a head 1..depth, or ENSEMBLE
ENSEMBLE = "ens"  # the mean of the deep-supervision heads' probabilities
V = TypeVar("V")
LEVEL_HELP = f"pruning level 1..4 or '{ENSEMBLE}' (default: the deepest head)"  # the CLIs' --level


def parse_level(text: str | int) -> Level:
    """``"3"`` -> 3, ``"ens"`` or ``"ensemble"`` -> ``ENSEMBLE``; ``ValueError`` for anything else."""
    if str(text).lower() in (ENSEMBLE, "ensemble"):
        return ENSEMBLE
    return int(text)


def is_ensemble(level: Level) -> bool:
    return str(level) == ENSEMBLE


def level_key(level: Level) -> str:
    """The key of ``level`` in every per-level dict: ``"3"`` or ``"ens"``."""
    return str(level)


def keyed(levels: Mapping[Any, V] | None) -> dict[str, V]:
    """A per-level dict with ``level_key`` keys (old checkpoints keyed heads by ``int``); ``{}`` for None."""
    return {level_key(k): v for k, v in (levels or {}).items()}


def level_name(level: Level) -> str:
    """``"L3"`` for level 3, ``"ensemble"`` for the ensemble."""
    return "ensemble" if is_ensemble(level) else f"L{level}"


def short_name(level: Level) -> str:
    """``"L3"`` for level 3, ``"ens"`` for the ensemble (text tables)."""
    return ENSEMBLE if is_ensemble(level) else f"L{level}"


def model_levels(model: nn.Module) -> list[Level]:
    """Every level a model can be evaluated at: its heads, plus the ensemble with several heads."""
    levels: list[Level] = list(model.levels)
    if len(levels) > 1:
        levels.append(ENSEMBLE)
    return levels


def default_level(model: nn.Module) -> int:
    """The level used when none is asked for: the deepest head."""
    return max(model.levels)


def is_deepest(model: nn.Module, level: Level) -> bool:
    return not is_ensemble(level) and int(level) == default_level(model)


def one_pass_levels(model: nn.Module, level: Level) -> list[Level]:
    """The levels that a pass at ``level`` yields at no extra cost: every level for the deepest head or
    the ensemble (both run the whole network), else ``level`` alone."""
    return model_levels(model) if is_ensemble(level) or is_deepest(model, level) else [level]


def heads(levels: Iterable[V]) -> list[V]:
    """The head levels (or keys) among ``levels``, shallowest first; the ensemble left out."""
    return sorted((k for k in levels if not is_ensemble(k)), key=int)


def deepest_key(levels: Iterable[V]) -> V | None:
    """The deepest head among levels or per-level keys, as given; None when there is no head."""
    found = heads(levels)
    return found[-1] if found else None


def deepest(levels: Mapping[Any, dict[str, float]]) -> dict[str, float]:
    """The metrics of the deepest head in a per-level dict (``{}`` when there are none)."""
    found = deepest_key(levels)
    return levels[found] if found is not None else {}
