"""Where a volume's axes go: the axial slices of a RAS+ volume in the radiological convention, and back.

Training (NIfTI datasets), the app and ``core.predict`` (NIfTI scans) and ``core.convert`` all
slice volumes this way, so a model sees a patient the same way on every path.
"""
from __future__ import annotations

import numpy as np


def radiological_slices(volume: np.ndarray) -> np.ndarray:
    """A RAS+ volume ``(x, y, z)`` -> axial slices ``(z, rows, cols)`` as radiology viewers show them.

    Row 0 is the most anterior voxel row and column 0 the patient's rightmost voxel column
    (``slices[k, r, c] = volume[X-1-c, Y-1-r, k]``); slices go from inferior to superior.
    """
    return volume[::-1, ::-1].transpose(2, 1, 0)


def from_slices(slices: np.ndarray) -> np.ndarray:
    """Axial slices ``(S, rows, cols)`` in the radiological convention -> a RAS+ volume ``(x, y, z)``.

    The inverse of ``radiological_slices``.

    Example:
        >>> s = np.arange(24).reshape(2, 3, 4)
        >>> bool((radiological_slices(from_slices(s)) == s).all())
        True
    """
    return np.ascontiguousarray(slices.transpose(2, 1, 0)[::-1, ::-1, :])
