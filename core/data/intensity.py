"""Intensities: how raw data becomes uint8 slices, and the policies that put those on a common scale.

``to_uint8`` maps 16-bit, signed or float data (2D images, scan volumes, NIfTI dataset channels)
to 0..255 by its 0.5th..99.5th percentile window, so a few hot pixels do not darken the rest.

A checkpoint records its policy in ``preprocessing["intensity"]``; training, evaluation,
prediction and the app all call ``standardize`` with it, so they see the same inputs.

- ``"none"``: slices as decoded (checkpoints made before policies existed).
- ``"volume"``: per volume and per channel, the 1st..99.5th percentile of the voxels inside the
  body (non-zero in any channel) is stretched to 0..255. Scans from scanners with other gains or
  windows then look alike; a single 2D image is its own volume.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core.data.errors import DataError

POLICIES = ("none", "volume")
PERCENTILES = (1.0, 99.5)
CHUNK = 1 << 22  # values converted at a time: bounds the temporaries of large volumes
WINDOW = (0.5, 99.5)


Window = tuple[float, float]  # a fixed (low, high) intensity range, e.g. CT Hounsfield units


def to_uint8(values: np.ndarray, window: Window | None = None) -> np.ndarray:
    """Window ``values`` (any shape) to their 0.5..99.5 percentiles scaled to 0..255; uint8 passes through.

    With a fixed ``window`` (a CT model's, from its training data) that range is used instead,
    for uint8 data too, so Hounsfield units keep their meaning from scan to scan. Non-finite
    values (NaN outside a skull-stripped brain, say) become the window's low end; ``DataError``
    when there is no finite value at all.

    Example:
        >>> ramp = np.arange(1000, dtype=np.uint16); ramp[-1] = 60000   # one hot pixel
        >>> out = to_uint8(ramp); int(out[0]), int(out[500]), int(out[-1])
        (0, 128, 255)
        >>> to_uint8(np.array([-1000.0, 40.0, 3000.0]), window=(-160.0, 240.0)).tolist()   # a CT window
        [0, 128, 255]
    """
    if values.dtype == np.uint8 and window is None:
        return values
    if window is None:
        finite = values[np.isfinite(values)] if values.dtype.kind in "fc" else values.reshape(-1)
        if not finite.size:
            raise DataError("no finite values (all NaN or infinite)")
        lo, hi = np.percentile(finite.astype(np.float32, copy=False), WINDOW)
        del finite
    else:
        lo, hi = window
    out = np.zeros(values.shape, np.uint8)
    if hi <= lo:
        return out
    flat, flat_out = values.reshape(-1), out.reshape(-1)
    for start in range(0, flat.size, CHUNK):  # a chunk at a time: a large volume needs no float copy of itself
        chunk = flat[start:start + CHUNK].astype(np.float32)
        chunk[~np.isfinite(chunk)] = lo
        flat_out[start:start + CHUNK] = np.round(np.clip((chunk - lo) / (hi - lo), 0, 1) * 255)
    return out


def windows_of(preprocessing: Mapping[str, Any]) -> dict[int, Window]:
    """A checkpoint's fixed intensity windows by channel (CT), from its ``preprocessing``; ``{}`` if none.

    Example:
        >>> windows_of({"windows": {"0": [-160, 240]}}), windows_of({})
        ({0: (-160.0, 240.0)}, {})
    """
    return {int(k): (float(w[0]), float(w[1])) for k, w in (preprocessing.get("windows") or {}).items()}


def standardize(images: np.ndarray, policy: str = "none") -> np.ndarray:
    """Apply ``policy`` to the uint8 slices ``(N, H, W, C)`` of ONE volume (or one image, N=1).

    Example:
        >>> dim = np.zeros((2, 8, 8, 1), np.uint8); dim[:, 2:6, 2:6] = np.arange(16, dtype=np.uint8).reshape(4, 4)[..., None]
        >>> out = standardize(dim, "volume")
        >>> int(out.max()), int(out[0, 0, 0, 0])   # the body fills the range, the background stays 0
        (255, 0)
        >>> standardize(dim, "none") is dim
        True
    """
    if policy == "none":
        return images
    if policy != "volume":
        raise ValueError(f"unknown intensity policy {policy!r}; choose from {POLICIES}")
    body = images.max(axis=-1) > 0
    if not body.any():
        return images
    out = np.empty_like(images)
    for c in range(images.shape[-1]):
        channel = images[..., c]
        lo, hi = uint8_percentiles(channel[body], PERCENTILES)
        if hi <= lo:
            out[..., c] = channel
            continue
        scaled = (np.arange(256, dtype=np.float64) - lo) * (255.0 / (hi - lo))  # a lookup table: uint8 in, uint8 out
        out[..., c] = np.clip(np.round(scaled), 0, 255).astype(np.uint8)[channel]
        out[..., c][~body] = 0
    return out


def uint8_percentiles(values: np.ndarray, percentiles: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, percentiles)`` of uint8 values from their histogram: the same numbers,
    without the float64 copy and sort of every value.

    Example:
        >>> v = np.random.default_rng(0).integers(0, 256, 1001).astype(np.uint8)
        >>> np.allclose(uint8_percentiles(v, (1.0, 50.0, 99.5)), np.percentile(v, (1.0, 50.0, 99.5)))
        True
    """
    counts = np.zeros(256, np.int64)
    for start in range(0, values.size, CHUNK):
        counts += np.bincount(values[start:start + CHUNK], minlength=256)
    ends = np.cumsum(counts)  # order statistic k (0-based) is the first value whose cumulative count exceeds k
    out = []
    for q in percentiles:
        position = q / 100 * (values.size - 1)
        below = int(np.floor(position))
        low = np.searchsorted(ends, below, side="right")
        high = np.searchsorted(ends, min(below + 1, values.size - 1), side="right")
        out.append(float(low + (position - below) * (high - low)))
    return out


def standardize_volumes(images: np.ndarray, volumes: list[str], policy: str = "none") -> np.ndarray:
    """``standardize`` each volume of a stack of slices; ``volumes[i]`` names slice ``i``'s volume."""
    if policy == "none":
        return images
    out = np.empty_like(images)
    ids = np.asarray(volumes)
    for volume in dict.fromkeys(volumes):
        rows = np.flatnonzero(ids == volume)
        out[rows] = standardize(images[rows], policy)
    return out
