"""What cropping to the head could gain at most: the resolution ceiling with and without the crop.

    python bench/crop_ceiling.py --data ../shared/data/lgg_mri/kaggle_3m

A model trained at ``--size`` px sees every mask shrunk to that size, and its predictions are
enlarged back, so its volume Dice cannot exceed the masks' own round trip
(``core.data.resolution``). Cropping each patient to the bounding box of its head (voxels above
``THRESHOLD`` in any channel, over all its slices) before resizing puts more pixels on the brain;
this measures both ceilings per patient and the head's share of the frame. Writes
``docs/crop_ceiling.json``; ``docs/recipe.md`` quotes it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's core/, when run as a script
from core.data import read_image, read_mask  # noqa: E402
from core.data.lgg import list_lgg  # noqa: E402
from core.data.resolution import round_trip  # noqa: E402
from core.files import atomic_write  # noqa: E402

RESULTS = ROOT / "docs" / "crop_ceiling.json"
THRESHOLD = 10  # uint8: above the scanner's background


def volume_dice(truth: np.ndarray, guess: np.ndarray) -> float:
    total = truth.sum() + guess.sum()
    return 1.0 if total == 0 else float(2 * (truth & guess).sum() / total)


def patient_ceilings(images: np.ndarray, masks: np.ndarray, size: int) -> dict[str, float]:
    """Round-trip volume Dice of one patient's masks, full frame and head crop, and the crop's share."""
    head = (images.max(axis=-1) > THRESHOLD).any(axis=0)
    rows, cols = np.flatnonzero(head.any(axis=1)), np.flatnonzero(head.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    full = np.stack([round_trip(m, size) for m in masks]) > 0
    cropped = np.zeros_like(full)
    cropped[:, top:bottom, left:right] = np.stack([round_trip(m[top:bottom, left:right], size) for m in masks]) > 0
    truth = masks > 0
    return {"full": volume_dice(truth, full), "crop": volume_dice(truth, cropped),
            "side_share": max(bottom - top, right - left) / max(masks.shape[1:])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the kaggle_3m folder")
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args()
    patients: dict[str, list[tuple[Path, Path]]] = {}
    for patient, _, image, mask in list_lgg(args.data):
        patients.setdefault(patient, []).append((image, mask))
    rows = {}
    for patient, files in patients.items():
        images = np.stack([read_image(i, 3) for i, _ in files])
        masks = np.stack([read_mask(m) for _, m in files])
        if masks.any():
            rows[patient] = patient_ceilings(images, masks, args.size)
    summary = {key: round(statistics.mean(r[key] for r in rows.values()), 4) for key in ("full", "crop", "side_share")}
    summary |= {"size": args.size, "patients": len(rows),
                "median_side_share": round(statistics.median(r["side_share"] for r in rows.values()), 4)}
    atomic_write(RESULTS, json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
