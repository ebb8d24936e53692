"""Pictures made from predictions: overlays, head agreement, sizes for display."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from app.theme import CLASS_RGB, CLASS_TEXT, LESION_RGB, TRUTH_RGB
from core.inference import label_values

AGREE_RGB = (20, 184, 166)  # every head marks the pixel
DISAGREE_RGB = ((253, 224, 71), (251, 146, 60), (239, 68, 68))  # some heads do: few .. most


def foreground(probs: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` probabilities -> ``(H, W)`` probability of any foreground class."""
    return probs[0] if probs.shape[0] == 1 else 1.0 - probs[0]


def anatomy(image: np.ndarray) -> np.ndarray:
    """An ``(H, W, C)`` uint8 image as grey RGB: the FLAIR channel (the 2nd of 3 in LGG slices), or the only one.

    The colour composite of the three MRI channels shows a lesion in colour, which reads like a mask.
    """
    grey = image[..., 1] if image.shape[2] >= 3 else image[..., 0]
    return np.repeat(grey[..., None], 3, axis=2)


def overlay(image: np.ndarray, mask: np.ndarray, opacity: float = 0.45,
            color: tuple[int, int, int] = LESION_RGB) -> np.ndarray:
    """``image`` (H, W, C uint8) with the mask's foreground tinted and outlined.

    A binary mask (0/1 or 0/255) takes ``color``; a label map of several classes takes
    ``CLASS_RGB`` (class 1 in ``color``), the colours of ``class_legend``.
    """
    rgb = image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, axis=2)  # 2 channels: the first
    out = rgb.astype(np.float32)
    labels = label_values(mask)
    palette = (color, *CLASS_RGB[1:])
    classes = [int(k) for k in np.unique(labels) if k > 0]
    for k in classes:
        region = labels == k
        out[region] = (1 - opacity) * out[region] + opacity * np.array(palette[(k - 1) % len(palette)], np.float32)
    out = out.round().astype(np.uint8)
    thickness = max(1, round(max(mask.shape) / 256))
    for k in classes:
        contours, _ = cv2.findContours((labels == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, palette[(k - 1) % len(palette)], thickness)
    return out


def class_legend(names: Sequence[str]) -> str:
    """Markdown naming each class (background first in ``names``) in the colour ``overlay`` gives it.

    Example:
        >>> class_legend(["background", "edema", "enhancing"])
        ':red[■] edema · :blue[■] enhancing'
    """
    return " · ".join(f":{CLASS_TEXT[k % len(CLASS_TEXT)]}[■] {name}" for k, name in enumerate(names[1:]))


def truth_overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with a ground-truth mask in the truth colour."""
    return overlay(image, mask, 0.4, TRUTH_RGB)


def agreement(image: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """``image`` dimmed, with pixels all ``masks`` mark in ``AGREE_RGB`` and those only some mark in
    ``DISAGREE_RGB`` (yellow: few masks, red: most)."""
    votes = np.sum([m > 0 for m in masks], axis=0)
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
    out = (rgb.astype(np.float32) * 0.55).round().astype(np.uint8)
    n = len(masks)
    out[votes == n] = AGREE_RGB
    for v in range(1, n):
        out[votes == v] = DISAGREE_RGB[(v - 1) * len(DISAGREE_RGB) // (n - 1)]
    return out


def disagreement_share(masks: Sequence[np.ndarray]) -> float:
    """Share of pixels some but not all masks mark."""
    votes = np.sum([m > 0 for m in masks], axis=0)
    return float(((votes > 0) & (votes < len(masks))).mean())


def enlarge(image: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Scale small images up (nearest neighbour, whole factors) so they show crisp on screen."""
    factor = -(-min_size // max(image.shape[:2]))
    if factor <= 1:
        return image
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def shrink(array: np.ndarray, max_side: int) -> np.ndarray:
    """Scale an array down (area averaging) so that its longer side is at most ``max_side``."""
    h, w = array.shape[:2]
    if max(h, w) <= max_side:
        return array
    scale = max_side / max(h, w)
    return cv2.resize(array, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def strip(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Same-sized RGB images side by side, separated by white gaps."""
    spacer = np.full((images[0].shape[0], gap, 3), 255, np.uint8)
    parts = [part for image in images for part in (image, spacer)][:-1]
    return np.hstack(parts)
