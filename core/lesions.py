"""Lesion statistics of a segmented scan: per slice and for the whole volume (shared by app and CLI)."""
from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from core.scans import Scan


def slice_rows(scan: Scan, masks: np.ndarray, probs: np.ndarray) -> list[dict[str, Any]]:
    """One row per slice: lesion pixels, area in mm² (where the spacing is known), max probability.

    ``masks`` is boolean ``(S, H, W)``; ``probs`` the lesion probability ``(S, H, W)``.

    Example (0.5 x 0.5 mm pixels, so 4 lesion pixels are 1 mm²):
        >>> scan = Scan("head.nii.gz", "nifti", np.zeros((2, 4, 4, 3), np.uint8), spacing=(0.5, 0.5, 2.0))
        >>> masks = np.zeros((2, 4, 4), bool); masks[0, :2, :2] = True
        >>> slice_rows(scan, masks, masks * 0.9)
        [{'slice': 1, 'lesion_pixels': 4, 'lesion_mm2': 1.0, 'max_probability': 0.9},
         {'slice': 2, 'lesion_pixels': 0, 'lesion_mm2': 0.0, 'max_probability': 0.0}]
    """
    pixel_mm2 = scan.spacing[0] * scan.spacing[1] if scan.spacing else None
    rows = []
    for i, (mask, prob) in enumerate(zip(masks, probs)):
        pixels = int(mask.sum())
        rows.append({"slice": i + 1, "lesion_pixels": pixels,
                     "lesion_mm2": round(pixels * pixel_mm2, 2) if pixel_mm2 else None,
                     "max_probability": round(float(prob.max()), 4)})
    return rows


def volume_summary(scan: Scan, masks: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Lesion voxels, volume in mL (None without spacing), slices with lesion, max probability.

    Example (0.5 x 0.5 x 2 mm voxels are 0.0005 mL each):
        >>> scan = Scan("head.nii.gz", "nifti", np.zeros((2, 4, 4, 3), np.uint8), spacing=(0.5, 0.5, 2.0))
        >>> masks = np.zeros((2, 4, 4), bool); masks[0, :2, :2] = True
        >>> volume_summary(scan, masks, masks * 0.9)
        {'file': 'head.nii.gz', 'kind': 'nifti', 'slices': 2, 'lesion_voxels': 4, 'lesion_ml': 0.002,
         'slices_with_lesion': 1, 'max_probability': 0.9}
    """
    voxels = int(masks.sum())
    return {"file": scan.name, "kind": scan.kind, "slices": len(masks), "lesion_voxels": voxels,
            "lesion_ml": round(voxels * scan.voxel_ml, 3) if scan.voxel_ml else None,
            "slices_with_lesion": int(masks.any(axis=(1, 2)).sum()),
            "max_probability": round(float(probs.max()), 4) if probs.size else 0.0}


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV text (header from the first row's keys); empty cells for None.

    Example:
        >>> print(csv_text([{"slice": 1, "lesion_pixels": 4, "lesion_mm2": None}]), end="")
        slice,lesion_pixels,lesion_mm2
        1,4,
    """
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()
