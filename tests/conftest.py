"""Shared fixtures: small models, the real LGG folder (skipped when absent), tiny data folders."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
LGG = ROOT.parent / "shared" / "data" / "lgg_mri" / "kaggle_3m"

requires_lgg = pytest.mark.skipif(
    not LGG.is_dir(), reason=f"real LGG data not found at {LGG} (a fresh machine has no ../shared/data)"
)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write an image with OpenCV (format from the suffix), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


@pytest.fixture
def image_mask_folder(tmp_path: Path) -> Path:
    """images/ + masks/ with three 32x32 RGB images and binary 0/255 masks."""
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(tmp_path / "images" / f"case{i}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        mask = np.zeros((32, 32), np.uint8)
        mask[8:16, 8 + i : 20] = 255
        write_png(tmp_path / "masks" / f"case{i}.png", mask)
    return tmp_path


@pytest.fixture
def lgg_folder(tmp_path: Path) -> Path:
    """A tiny kaggle_3m-style tree: 3 patients x 4 slices of 32x32 TIFFs."""
    rng = np.random.default_rng(1)
    root = tmp_path / "kaggle_3m"
    for p in range(3):
        patient = f"TCGA_XX_{p:04d}_20000101"
        for n in range(1, 5):
            image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            mask = np.zeros((32, 32), np.uint8)
            if n % 2:
                mask[4:12, 4:12] = 255
            write_png(root / patient / f"{patient}_{n}.tif", image)
            write_png(root / patient / f"{patient}_{n}_mask.tif", mask)
    return root
