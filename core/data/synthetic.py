"""Synthetic brain-like phantoms with bright lesions, generated on the fly (demo and tests)."""
from __future__ import annotations

import cv2
import numpy as np

from core.data.slices import SliceSet


def phantom(rng: np.random.Generator, size: int, lesion: bool) -> tuple[np.ndarray, np.ndarray]:
    """One ``(size, size, 3)`` uint8 slice: a textured skull/brain ellipse, maybe with a lesion.

    The lesion is a blurred blob brighter in the second (FLAIR-like) channel, as LGG lesions are.
    """
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    cx, cy = 0.5 + rng.uniform(-0.05, 0.05), 0.5 + rng.uniform(-0.05, 0.05)
    ax, ay = rng.uniform(0.30, 0.40), rng.uniform(0.36, 0.46)
    r = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    brain = (r < 1).astype(np.float32)
    skull = ((r >= 1) & (r < 1.15)).astype(np.float32)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (s, s)).astype(np.float32), (0, 0), max(1.0, s / 48))
    base = brain * (0.35 + 0.08 * noise) + skull * 0.8
    mask = np.zeros((s, s), np.uint8)
    extra = np.zeros((s, s), np.float32)
    if lesion:
        inside = np.argwhere(r < 0.5)
        ly, lx = inside[rng.integers(len(inside))]
        radius = rng.uniform(0.04, 0.12) * s
        angle = rng.uniform(0, 180)
        cv2.ellipse(mask, (int(lx), int(ly)), (int(radius), int(radius * rng.uniform(0.5, 1.0))),
                    angle, 0, 360, 1, -1)
        extra = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)
    channels = [base, base + 0.35 * extra, base * 0.9 + 0.15 * extra]
    image = np.stack([np.clip(c + rng.normal(0, 0.02, (s, s)), 0, 1) for c in channels], axis=-1)
    return (image * 255).astype(np.uint8), mask


def make_synthetic(
    n_volumes: int = 12, slices_per_volume: int = 16, size: int = 128, seed: int = 0, lesion_fraction: float = 0.6
) -> SliceSet:
    """A deterministic phantom set: ``n_volumes`` volumes of ``slices_per_volume`` slices."""
    rng = np.random.default_rng(seed)
    images, masks, volumes, names = [], [], [], []
    for v in range(n_volumes):
        for k in range(slices_per_volume):
            image, mask = phantom(rng, size, lesion=rng.random() < lesion_fraction)
            images.append(image)
            masks.append(mask)
            volumes.append(f"synthetic_{v:02d}")
            names.append(f"synthetic_{v:02d}_{k + 1}")
    return SliceSet(np.stack(images), np.stack(masks), volumes, names)
