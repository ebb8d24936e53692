"""Evaluation: metrics of every level over a loader (validation during training too), and a checkpoint
per pruning level: quality, size, FLOPs and latency."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from core.complexity import count_flops, count_parameters, measure_latency
from core.data import DataError, SliceDataset, SliceSet
from core.inference import head_probabilities, normalize, predict_images
from core.metrics import SegmentationMetrics
from core.levels import Level, level_key, model_levels
from core.postprocess import DEFAULT as DEFAULT_RULE
from core.postprocess import rule_of, volume_mask
from core.runtime import autocast


def evaluate_loader(
    model: nn.Module, loader: Any, preprocessing: dict[str, Any], volumes: Sequence[str] | None,
    dtype: torch.dtype | None = None, criterion: nn.Module | None = None,
    progress: Callable[[float], None] | None = None, gather: Callable[[Any], list[Any]] | None = None,
) -> dict[str, Any]:
    """Metrics of every level over a loader of ``(image, mask, index)`` from one forward per batch.

    Returns ``{"levels": {key: metrics}, "volumes": {key: {volume: Dice}}, "loss": mean loss or
    None}``, keyed by ``core.levels.level_key``; volume metrics use ``volumes[index]`` when
    ``volumes`` is given. ``progress`` gets the fraction of images done. ``gather`` (distributed
    validation: each process holds a share of the loader) returns every process's object, so the
    metrics cover all shares.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    metrics: dict[str, SegmentationMetrics] = {}
    loss_sum, n = 0.0, 0
    for images, masks, index in loader:
        x = normalize(images.to(device), preprocessing["mean"], preprocessing["std"])
        masks = masks.to(device)
        with autocast(device, dtype):
            out = model(x)
        if criterion is not None:
            loss_sum += criterion(out, masks).item() * len(x)
        probs = head_probabilities(model, out)
        ids = [volumes[i] for i in index.tolist()] if volumes is not None else None
        for level, p in probs.items():
            metrics.setdefault(level, SegmentationMetrics(model.num_classes)).update(p, masks, ids)
        n += len(x)
        if progress:
            progress(n / len(loader.dataset))
    model.train(was_training)
    if gather is not None:
        shares = gather(({level: m.cpu() for level, m in metrics.items()}, loss_sum, n))
        metrics = shares[0][0]
        for other, _, _ in shares[1:]:
            for level, m in other.items():  # a rank with no share of the slices has no levels
                metrics.setdefault(level, SegmentationMetrics(model.num_classes)).merge(m)
        loss_sum, n = sum(s[1] for s in shares), sum(s[2] for s in shares)
    return {
        "levels": {level: m.compute() for level, m in metrics.items()},
        "volumes": {level: m.per_volume() for level, m in metrics.items()} if volumes is not None else {},
        "loss": loss_sum / n if criterion is not None and n else None,
    }


def split_ids(meta: dict[str, Any], split: str) -> list[str] | None:
    """The checkpoint's ``"val"`` or ``"train"`` volume ids; None for ``"all"``.

    Example:
        >>> split_ids({"split": {"train": ["p1"], "val": ["p2"]}}, "val"), split_ids({}, "all")
        (['p2'], None)
        >>> split_ids({}, "val")
        Traceback (most recent call last):
        core.data.errors.DataError: the checkpoint records no 'val' split; use --split all
    """
    if split == "all":
        return None
    ids = (meta.get("split") or {}).get(split)
    if not ids:
        raise DataError(f"the checkpoint records no {split!r} split; use --split all")
    return ids


def select_volumes(slices: SliceSet, ids: Sequence[str] | None, split: str = "val") -> SliceSet:
    """Every slice for ``ids=None``, else those of the ``split`` volumes ``ids``; ``DataError`` if none is in the data.

    Example:
        >>> import numpy as np
        >>> slices = SliceSet(np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 8, 8), np.uint8),
        ...                   volumes=["p1", "p1", "p2"], names=["a", "b", "c"])
        >>> select_volumes(slices, ["p2"]).names, select_volumes(slices, None) is slices
        (['c'], True)
    """
    if ids is None:
        return slices
    chosen = slices.select_volumes(ids)
    if len(chosen) == 0:
        example = f" (e.g. {ids[0]})" if ids else ""
        raise DataError(f"none of the checkpoint's {len(ids)} {split} volumes{example} are in this data")
    return chosen


def select_split(slices: SliceSet, meta: dict[str, Any], split: str) -> SliceSet:
    """``"all"`` slices, or the checkpoint's ``"val"`` (or ``"train"``) volumes (``split_ids``, ``select_volumes``).

    Example:
        >>> import numpy as np
        >>> slices = SliceSet(np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 8, 8), np.uint8),
        ...                   volumes=["p1", "p1", "p2"], names=["a", "b", "c"])
        >>> select_split(slices, {"split": {"val": ["p2"]}}, "val").names
        ['c']
    """
    return select_volumes(slices, split_ids(meta, split), split)


def evaluate_model(
    model: nn.Module, meta: dict[str, Any], slices: SliceSet, levels: Sequence[Level] | None = None,
    dtype: torch.dtype | None = None, batch_size: int = 8, timing_repeats: int = 10,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Metrics of ``levels`` (default: all) on ``slices``, plus params, FLOPs and ms per image.

    The result is what ``python -m core.evaluate --json`` writes; each level also lists the Dice
    of every volume (``volume_dice``) where the data has volumes, and where the checkpoint
    carries a post-processing rule, the volume Dice under it (``postprocessed``).

    Example (an untrained width-4 model on two 32x32 slices of one volume):
        >>> import numpy as np
        >>> from core.models import NestedUNet
        >>> slices = SliceSet(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 32), np.uint8),
        ...                   volumes=["p1", "p1"], names=["a", "b"])
        >>> meta = {"preprocessing": {"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}}
        >>> result = evaluate_model(NestedUNet(base_width=4), meta, slices, levels=[1], timing_repeats=1)
        >>> result["n_images"], result["n_volumes"], list(result["levels"])
        (2, 1, ['1'])
        >>> sorted(result["levels"]["1"])
        ['dice', 'flops', 'iou', 'ms_per_image', 'params', 'volume_dice', 'volume_dice_mean', 'volume_dice_median']
        >>> result["levels"]["1"]["params"], result["levels"]["1"]["flops"]
        (1793, 2146304)
    """
    available = model_levels(model)
    levels = list(levels or available)
    for level in levels:
        if level not in available:
            raise ValueError(f"level {level} not available; this model has {available}")
    loader = DataLoader(SliceDataset(slices), batch_size)
    volumes = slices.volumes if slices.has_volumes else None
    steps = len(levels) + 1  # segmenting counts as one step, then timing each level

    def segmenting(fraction: float) -> None:
        if progress:
            progress(fraction / steps, "segmenting")

    segmenting(0.0)
    evaluated = evaluate_loader(model, loader, meta["preprocessing"], volumes, dtype, progress=segmenting)
    quality = evaluated["levels"]
    size = meta["preprocessing"].get("input_size") or slices.images.shape[1]
    result: dict[str, Any] = {"levels": {}, "n_images": len(slices)}
    for i, level in enumerate(levels):
        if progress:
            progress((i + 1) / steps, f"timing level {level}")
        row = dict(quality[level_key(level)])
        row.pop("n_images", None)
        row.pop("n_volumes", None)
        row |= {
            "params": count_parameters(model, level),
            "flops": count_flops(model, level, size),
            "ms_per_image": measure_latency(model, level, size, 1, dtype, repeats=timing_repeats),
        }
        if level_key(level) in evaluated["volumes"]:
            row["volume_dice"] = evaluated["volumes"][level_key(level)]
            if meta.get("postprocessing"):  # the checkpoint's own rule, as predict and the app apply it
                rule = rule_of(meta, level)
                dice = postprocessed_volume_dice(
                    volume_predictions(model, meta["preprocessing"], slices, level, dtype, rule["hflip"], batch_size),
                    rule)
                row["postprocessed"] = {"rule": rule, "volume_dice_mean": float(np.mean(list(dice.values()))),
                                        "volume_dice_median": float(np.median(list(dice.values()))),
                                        "volume_dice": dice}
        result["levels"][level_key(level)] = row
    if volumes is not None:
        result["n_volumes"] = len(set(volumes))
    if progress:
        progress(1.0, "done")
    return result


def volume_predictions(
    model: nn.Module, preprocessing: dict[str, Any], slices: SliceSet, level: Level,
    dtype: torch.dtype | None = None, hflip: bool = False, batch_size: int = 8,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per volume: ``(lesion probability (S, H, W) as uint8 0..255, truth (S, H, W) bool)`` at ``level``.

    The input of post-processing studies: every rule can then be scored without the model.
    """
    out = {}
    volumes = np.asarray(slices.volumes)
    for volume in dict.fromkeys(slices.volumes):
        rows = np.flatnonzero(volumes == volume)
        probs = predict_images(model, slices.images[rows], preprocessing, level, dtype, batch_size, hflip)
        lesion = probs[:, 0] if probs.shape[1] == 1 else 1.0 - probs[:, 0]
        out[volume] = (np.round(lesion * 255).astype(np.uint8), slices.masks[rows] > 0)
    return out


def volume_errors(
    predictions: dict[str, tuple[np.ndarray, np.ndarray]], rule: dict[str, float],
) -> dict[str, dict[str, int]]:
    """Per volume, the voxel counts of its mask under a post-processing ``rule`` against the truth:
    ``lesion`` (true voxels), ``false_positive``, ``false_negative`` and ``false_positive_on_empty`` (those
    on slices without lesion).

    Example:
        >>> p = np.zeros((2, 3, 4), np.uint8); p[0, 0, :2] = 200; p[1, 2, 3] = 200  # half the lesion; a stray voxel
        >>> t = np.zeros((2, 3, 4), bool); t[0, 0] = True
        >>> volume_errors({"a": (p, t)}, {"threshold": 0.5})["a"]
        {'lesion': 4, 'false_positive': 1, 'false_negative': 2, 'false_positive_on_empty': 1}
    """
    rule = DEFAULT_RULE | rule
    counts = {}
    for volume, (lesion, truth) in predictions.items():
        mask = volume_mask(lesion.astype(np.float32) / 255, rule)
        wrong = mask & ~truth
        empty = ~truth.any(axis=(1, 2))
        counts[volume] = {"lesion": int(truth.sum()), "false_positive": int(wrong.sum()),
                          "false_negative": int((truth & ~mask).sum()),
                          "false_positive_on_empty": int(wrong[empty].sum())}
    return counts


def dice_of(counts: dict[str, int]) -> float:
    """Dice from ``volume_errors`` counts; 1.0 when truth and mask are both empty.

    Example:
        >>> dice_of({"lesion": 4, "false_positive": 2, "false_negative": 0})
        0.8
    """
    hits = counts["lesion"] - counts["false_negative"]
    denom = 2 * hits + counts["false_positive"] + counts["false_negative"]
    return 2 * hits / denom if denom else 1.0


def postprocessed_volume_dice(
    predictions: dict[str, tuple[np.ndarray, np.ndarray]], rule: dict[str, float],
) -> dict[str, float]:
    """Dice of each volume's mask under a post-processing ``rule`` (``core.postprocess``); 1.0 if both empty.

    Example:
        >>> p = np.zeros((1, 3, 4), np.uint8); p[0, 0] = 200; p[0, 2, 3] = 200  # a stray voxel apart
        >>> t = np.zeros((1, 3, 4), bool); t[0, 0] = True
        >>> d = postprocessed_volume_dice({"a": (p, t)}, {"threshold": 0.5, "min_component_fraction": 0.5})
        >>> round(d["a"], 3), round(postprocessed_volume_dice({"a": (p, t)}, {})["a"], 3)
        (1.0, 0.889)
    """
    return {volume: dice_of(c) for volume, c in volume_errors(predictions, rule).items()}
