"""Preprocessing and prediction shared by the trainer, the CLIs and the app."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from core.data.intensity import standardize
from core.data.slices import resize_image
from core.levels import ENSEMBLE, Level, is_ensemble, level_key
from core.postprocess import filter_components
from core.losses import probabilities
from core.runtime import autocast, memory_format


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float, scaled to [0, 1] then standardised per channel."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    x = (images.float() / 255 - m) / s
    return x.contiguous(memory_format=memory_format(images.device))


def head_probabilities(model: nn.Module, out: torch.Tensor | list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-level probabilities (and their ensemble) from a full forward pass, keyed by ``level_key``."""
    heads = out if isinstance(out, list) else [out]
    probs = {level_key(level): probabilities(o.float()) for level, o in zip(model.levels, heads)}
    if len(heads) > 1:
        probs[ENSEMBLE] = torch.stack(list(probs.values())).mean(0)
    return probs


@torch.no_grad()
def predict_all(model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Probabilities of every head (and their ensemble) from one forward pass, keyed by ``level_key``."""
    with autocast(x.device, dtype):
        out = model(x)
    return head_probabilities(model, out)


@torch.no_grad()
def predict_levels(
    model: nn.Module, x: torch.Tensor, levels: Sequence[Level], dtype: torch.dtype | None = None, hflip: bool = False,
) -> dict[str, torch.Tensor]:
    """Probabilities at each of ``levels``, keyed by ``level_key``.

    One head computes only the nodes it needs; several heads or the ensemble take one full pass.
    ``hflip`` averages them with those of the mirrored input (test-time augmentation, twice the cost).
    """
    if hflip:
        mirrored = predict_levels(model, x.flip(-1), levels, dtype)
        return {k: (p + mirrored[k].flip(-1)) / 2 for k, p in predict_levels(model, x, levels, dtype).items()}
    if len(levels) == 1 and not is_ensemble(levels[0]):
        with autocast(x.device, dtype):
            return {level_key(levels[0]): probabilities(model(x, level=levels[0]).float())}
    probs = predict_all(model, x, dtype)
    return {level_key(level): probs[level_key(level)] for level in levels}


def predict_level(
    model: nn.Module, x: torch.Tensor, level: Level, dtype: torch.dtype | None = None, hflip: bool = False,
) -> torch.Tensor:
    """Probabilities at one level (``predict_levels``); the ensemble runs all heads."""
    return predict_levels(model, x, [level], dtype, hflip)[level_key(level)]


def predict_images_by_level(
    model: nn.Module, images: np.ndarray, preprocessing: dict[str, Any], levels: Sequence[Level],
    dtype: torch.dtype | None = None, batch_size: int = 8, hflip: bool = False,
) -> dict[str, np.ndarray]:
    """uint8 ``(N, H, W, C)`` images -> float32 probabilities ``(N, C_out, H, W)`` on the CPU, by ``level_key``."""
    device = next(model.parameters()).device
    out: dict[str, list[torch.Tensor]] = {level_key(level): [] for level in levels}
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size].transpose(0, 3, 1, 2)))
        x = normalize(batch.to(device), preprocessing["mean"], preprocessing["std"])
        for k, probs in predict_levels(model, x, levels, dtype, hflip).items():
            out[k].append(probs.cpu())
    return {k: torch.cat(parts).numpy() for k, parts in out.items()}


def predict_images(
    model: nn.Module, images: np.ndarray, preprocessing: dict[str, Any], level: Level,
    dtype: torch.dtype | None = None, batch_size: int = 8, hflip: bool = False,
) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` images -> float32 probabilities ``(N, C_out, H, W)`` at ``level`` on the CPU."""
    return predict_images_by_level(model, images, preprocessing, [level], dtype, batch_size, hflip)[level_key(level)]


@torch.no_grad()
def segment_images_by_level(
    model: nn.Module, preprocessing: dict[str, Any], images: np.ndarray, levels: Sequence[Level],
    dtype: torch.dtype | None = None, batch_size: int = 8, progress: Callable[[float], None] | None = None,
    turn: Callable[[], AbstractContextManager] = nullcontext, hflip: bool = False,
) -> dict[str, np.ndarray]:
    """Probabilities ``(N, C_out, H, W)`` per level (``level_key``) for the uint8 ``(N, H, W, C)`` slices of a scan.

    ``images`` are one volume (or one image): the checkpoint's intensity policy is applied to
    them as a whole. Images are resized to the model's training size (if it has one) and the
    probabilities resized back, so that structures keep the scale the model learned.
    Several levels come from one pass (``predict_levels``).
    ``hflip`` averages with the mirrored images' prediction. ``progress`` gets the fraction done;
    each batch runs inside ``turn()`` (the app passes a lock
    so that concurrent sessions take turns instead of oversubscribing the cores).
    """
    images = standardize(images, preprocessing.get("intensity", "none"))
    h, w = images.shape[1:3]
    size = preprocessing.get("input_size")
    out: dict[str, list[np.ndarray]] = {level_key(level): [] for level in levels}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if size:
            batch = np.stack([resize_image(image, size) for image in batch])
        with turn():
            found = predict_images_by_level(model, batch, preprocessing, levels, dtype, batch_size, hflip)
        for k, probs in found.items():
            if probs.shape[2:] != (h, w):
                probs = np.stack([[cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in image]
                                  for image in probs])
            out[k].append(probs)
        if progress:
            progress(min(1.0, (start + len(batch)) / len(images)))
    return {k: np.concatenate(parts) for k, parts in out.items()}


def segment_images(
    model: nn.Module, preprocessing: dict[str, Any], images: np.ndarray, level: Level,
    dtype: torch.dtype | None = None, batch_size: int = 8, progress: Callable[[float], None] | None = None,
    turn: Callable[[], AbstractContextManager] = nullcontext, hflip: bool = False,
) -> np.ndarray:
    """Probabilities ``(N, C_out, H, W)`` at ``level`` for the slices of a scan (``segment_images_by_level``)."""
    return segment_images_by_level(model, preprocessing, images, [level], dtype, batch_size, progress, turn,
                                   hflip)[level_key(level)]


def segment_image(
    model: nn.Module, preprocessing: dict[str, Any], image: np.ndarray, level: Level,
    dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Probabilities ``(C_out, H, W)`` for one uint8 ``(H, W, C)`` image at its own size (see ``segment_images``)."""
    return segment_images(model, preprocessing, image[None], level, dtype)[0]


def probabilities_to_mask(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``(C, H, W)`` probabilities -> uint8 mask: 0/255 for binary, class indices otherwise."""
    if probs.shape[0] == 1:
        return ((probs[0] >= threshold) * 255).astype(np.uint8)
    return probs.argmax(0).astype(np.uint8)


def label_values(masks: np.ndarray) -> np.ndarray:
    """Masks as ``probabilities_to_mask`` gives them -> label values: binary 0/255 -> 0/1, class indices kept.

    Example:
        >>> label_values(np.array([0, 255], np.uint8)).tolist(), label_values(np.array([0, 2], np.uint8)).tolist()
        ([0, 1], [0, 2])
    """
    return np.where(masks == 255, 1, masks).astype(np.uint8)


def lesion_masks(
    probs: np.ndarray, threshold: float = 0.5, min_component_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C, H, W)`` probabilities of one scan -> lesion probability ``(N, H, W)`` and masks ``(N, H, W)``.

    The lesion probability is the foreground channel (binary) or 1 - background (multi-class);
    masks are as ``probabilities_to_mask``. ``min_component_fraction`` then drops the scan's 3D
    connected lesion components smaller than that share of the largest (``core.postprocess``).
    """
    lesion = probs[:, 0] if probs.shape[1] == 1 else 1.0 - probs[:, 0]
    masks = np.stack([probabilities_to_mask(p, threshold) for p in probs])
    if min_component_fraction > 0:
        masks = np.where(filter_components(masks > 0, min_component_fraction), masks, 0).astype(np.uint8)
    return lesion, masks
