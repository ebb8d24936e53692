"""Where a volume's axes go: 2D slices of a RAS+ volume as radiology viewers show them, and back.

Training (NIfTI datasets), the app and ``core.predict`` (NIfTI scans) and ``core.convert`` all
slice volumes this way, so a model sees a patient the same way on every path. ``axis`` picks the
slicing plane (``--axis``; axial by default):

- axial: slices from inferior to superior; anterior at the top, the patient's right on the left;
- coronal: slices from posterior to anterior; superior at the top, the patient's right on the left;
- sagittal: slices from the patient's right to left; superior at the top, anterior on the left.
"""
from __future__ import annotations

import numpy as np

AXES = ("axial", "coronal", "sagittal")
# per axis: the flips applied to the RAS+ volume (x, y, z), then the order its axes take as (slice, row, column)
_LAYOUT = {"axial": ((0, 1), (2, 1, 0)), "coronal": ((0, 2), (1, 2, 0)), "sagittal": ((1, 2), (0, 2, 1))}


def radiological_slices(volume: np.ndarray, axis: str = "axial") -> np.ndarray:
    """A RAS+ volume ``(x, y, z)`` -> slices ``(slice, rows, cols)`` along ``axis`` in the radiological convention.

    Axial: ``slices[k, r, c] = volume[X-1-c, Y-1-r, k]``.

    Example:
        >>> v = np.arange(24).reshape(2, 3, 4)   # x, y, z
        >>> [radiological_slices(v, a).shape for a in AXES]
        [(4, 3, 2), (3, 4, 2), (2, 4, 3)]
    """
    flips, order = _LAYOUT[_checked(axis)]
    return np.flip(volume, axis=flips).transpose(order)


def from_slices(slices: np.ndarray, axis: str = "axial") -> np.ndarray:
    """The inverse of ``radiological_slices``: slices along ``axis`` -> the RAS+ volume ``(x, y, z)``.

    Example:
        >>> s = np.arange(24).reshape(2, 3, 4)
        >>> all((radiological_slices(from_slices(s, a), a) == s).all() for a in AXES)
        True
    """
    flips, order = _LAYOUT[_checked(axis)]
    return np.ascontiguousarray(np.flip(slices.transpose(np.argsort(order)), axis=flips))


def slice_spacing(zooms: tuple[float, float, float], axis: str = "axial") -> tuple[float, float, float]:
    """RAS+ voxel sizes ``(x, y, z)`` -> ``(row, column, slice)`` spacing of the slices along ``axis``."""
    _, order = _LAYOUT[_checked(axis)]
    return float(zooms[order[1]]), float(zooms[order[2]]), float(zooms[order[0]])


def _checked(axis: str) -> str:
    if axis not in _LAYOUT:
        raise ValueError(f"unknown axis {axis!r}; choose from {AXES}")
    return axis
