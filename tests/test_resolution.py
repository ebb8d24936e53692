"""The input size that follows the data: round trip, the rule, the real data sets, the trainer's default."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import LGG, ROOT, requires_lgg, write_png
from core.data import input_size
from core.data.resolution import round_trip_dice
from core.training.config import TrainConfig
from core.training.trainer import Trainer

EM = ROOT.parent / "shared" / "data" / "em_isbi2012"


def test_round_trip_loses_thin_structures_not_blobs() -> None:
    lines = np.zeros((128, 128), np.uint8)
    lines[:, 3::6] = 1
    blob = np.zeros((128, 128), np.uint8)
    blob[40:90, 30:100] = 1
    assert round_trip_dice([lines], 128) == 1.0
    assert round_trip_dice([lines], 64) < 0.8
    assert round_trip_dice([blob], 64) > 0.99


def test_multi_class_round_trip_scores_the_worst_class() -> None:
    mask = np.zeros((96, 96), np.uint8)
    mask[10:80, 10:80] = 1
    mask[40:42, :] = 2  # a 2-pixel band: the class that suffers
    assert round_trip_dice([mask], 32, num_classes=3) < 0.7 < round_trip_dice([mask == 1], 32)


def folder(tmp_path: Path, mask: np.ndarray) -> Path:
    for i in range(3):
        write_png(tmp_path / "images" / f"c{i}.png", np.full((*mask.shape, 3), 80 + 40 * i, np.uint8))
        write_png(tmp_path / "masks" / f"c{i}.png", mask * 255)
    return tmp_path


def test_folder_size_follows_its_masks(tmp_path: Path) -> None:
    fine = np.zeros((192, 192), np.uint8)
    fine[:, 5::7] = 1
    assert input_size(folder(tmp_path / "fine", fine)) == 192  # no smaller size keeps 1-pixel lines
    coarse = np.zeros((192, 192), np.uint8)
    coarse[32:160, 64:128] = 1
    assert input_size(folder(tmp_path / "coarse", coarse)) == 64


def test_trainer_records_the_size_it_chose(tmp_path: Path) -> None:
    coarse = np.zeros((96, 96), np.uint8)
    coarse[32:64, 32:64] = 1
    data = folder(tmp_path / "data", coarse)
    run = tmp_path / "run"
    Trainer(TrainConfig(data=str(data), out=str(run), width=4, epochs=1, batch_size=2, val_fraction=0.34)).fit()
    assert json.loads((run / "config.json").read_text())["size"] == 64


@requires_lgg
def test_lgg_trains_at_128() -> None:
    assert input_size(LGG) == 128


@pytest.mark.skipif(not EM.is_dir(), reason=f"EM slices not found at {EM} (a fresh machine has no ../shared/data)")
def test_em_membranes_need_more_than_half_their_resolution() -> None:
    assert 256 < input_size(EM) <= 512
