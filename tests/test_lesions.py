"""core.lesions: per-slice rows, the volume summary (mL from the voxel spacing) and CSV text."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from core.scans import Scan
from core.lesions import csv_text, slice_rows, volume_summary


def scan(spacing: tuple[float, float, float] | None, slices: int = 3, kind: str = "nifti") -> Scan:
    return Scan("head.nii.gz", kind, np.zeros((slices, 50, 50, 3), np.uint8), spacing=spacing)


def lesion(slices: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A 50x50 = 2500-voxel lesion on slice 2 only; probabilities 0.8 inside, 0.3 on slice 3."""
    masks = np.zeros((slices, 50, 50), bool)
    masks[1] = True
    probs = masks * 0.8
    probs[2, 0, 0] = 0.3
    return masks, probs


def test_volume_in_ml_from_the_voxel_spacing() -> None:
    masks, probs = lesion()
    # 0.5 x 0.5 x 4 mm = 1 mm³ per voxel, so 2500 voxels are 2.5 mL
    summary = volume_summary(scan((0.5, 0.5, 4.0)), masks, probs)
    assert summary == {"file": "head.nii.gz", "kind": "nifti", "slices": 3, "lesion_voxels": 2500,
                       "lesion_ml": 2.5, "slices_with_lesion": 1, "max_probability": 0.8}
    assert volume_summary(scan((1.0, 1.0, 1.0)), masks, probs)["lesion_ml"] == 2.5
    assert volume_summary(scan((2.0, 2.0, 5.0)), masks, probs)["lesion_ml"] == 50.0


def test_without_spacing_volumes_are_in_voxels_only() -> None:
    masks, probs = lesion()
    summary = volume_summary(scan(None, kind="tiff stack"), masks, probs)
    assert summary["lesion_ml"] is None and summary["lesion_voxels"] == 2500
    assert {row["lesion_mm2"] for row in slice_rows(scan(None), masks, probs)} == {None}


def test_empty_prediction() -> None:
    masks = np.zeros((2, 50, 50), bool)
    summary = volume_summary(scan((1.0, 1.0, 1.0), slices=2), masks, np.zeros((2, 50, 50)))
    assert summary["lesion_voxels"] == 0 and summary["lesion_ml"] == 0.0 and summary["slices_with_lesion"] == 0
    no_slices = volume_summary(scan(None, slices=0), np.zeros((0, 50, 50), bool), np.zeros((0, 50, 50)))
    assert no_slices["max_probability"] == 0.0 and no_slices["slices"] == 0


def test_slice_rows_area_in_mm2_numbered_from_1() -> None:
    masks, probs = lesion()
    rows = slice_rows(scan((0.5, 0.4, 3.0)), masks, probs)
    assert [row["slice"] for row in rows] == [1, 2, 3]
    assert [row["lesion_pixels"] for row in rows] == [0, 2500, 0]
    assert [row["lesion_mm2"] for row in rows] == [0.0, pytest.approx(500.0), 0.0]
    # the maximum probability covers the whole slice, not only the pixels over the threshold
    assert [row["max_probability"] for row in rows] == [0.0, 0.8, 0.3]


def test_max_probability_is_rounded_to_4_places() -> None:
    masks = np.zeros((1, 50, 50), bool)
    probs = np.full((1, 50, 50), 0.123456)
    assert slice_rows(scan(None, slices=1), masks, probs)[0]["max_probability"] == 0.1235
    assert volume_summary(scan(None, slices=1), masks, probs)["max_probability"] == 0.1235


def test_csv_text_round_trips_rows_with_empty_cells_for_none() -> None:
    masks, probs = lesion()
    rows = slice_rows(scan(None), masks, probs)
    text = csv_text(rows)
    assert text.splitlines()[0] == "slice,lesion_pixels,lesion_mm2,max_probability"
    read = list(csv.DictReader(io.StringIO(text)))
    assert [r["lesion_pixels"] for r in read] == ["0", "2500", "0"] and {r["lesion_mm2"] for r in read} == {""}
    assert csv_text([]) == ""
