"""core.evaluation: split selection and evaluate_model on a model whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.complexity import count_flops, count_parameters
from core.data import DataError, SliceSet
from core.evaluation import evaluate_model, select_split, split_ids
from core.models import NestedUNet

META = {"split": {"train": ["p1"], "val": ["p2"]}}


class Oracle(nn.Module):
    """One head that predicts lesion wherever the (single-channel) image is bright."""

    in_channels, num_classes, levels = 1, 1, [1]

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(20.0)
            self.conv.bias.fill_(-10.0)

    def forward(self, x: torch.Tensor, level: int | None = None) -> torch.Tensor:
        return self.conv(x)


def slice_set(has_volumes: bool = True) -> SliceSet:
    """Volume p1: found lesion + empty slice; p2: missed lesion + empty slice (8x8, 1 channel)."""
    images = np.zeros((4, 8, 8, 1), np.uint8)
    masks = np.zeros((4, 8, 8), np.uint8)
    images[0, 2:4, 2:4] = 255
    masks[0, 2:4, 2:4] = 1
    masks[2, 4:6, 4:6] = 1
    return SliceSet(images, masks, ["p1", "p1", "p2", "p2"], ["a", "b", "c", "d"], has_volumes)


ORACLE_META = {"preprocessing": {"input_size": 8, "mean": [0.0], "std": [1.0]}}


def test_split_ids() -> None:
    assert split_ids(META, "all") is None
    assert split_ids(META, "val") == ["p2"] and split_ids(META, "train") == ["p1"]
    for meta in ({}, {"split": None}, {"split": {"val": []}}):
        with pytest.raises(DataError, match="records no 'val' split; use --split all"):
            split_ids(meta, "val")


def test_select_split() -> None:
    slices = slice_set()
    assert select_split(slices, {}, "all") is slices
    assert select_split(slices, META, "val").names == ["c", "d"]
    assert select_split(slices, META, "train").volumes == ["p1", "p1"]
    with pytest.raises(DataError, match=r"none of the checkpoint's 2 val volumes \(e\.g\. p7\) are in this data"):
        select_split(slices, {"split": {"val": ["p7", "p8"]}}, "val")


def test_evaluate_model_scores_images_and_volumes() -> None:
    result = evaluate_model(Oracle(), ORACLE_META, slice_set(), timing_repeats=1)
    assert result["n_images"] == 4 and result["n_volumes"] == 2
    row = result["levels"]["1"]
    # per image: found 1, empty/empty 1, missed 0, empty/empty 1; per volume: p1 1, p2 0
    assert row["dice"] == pytest.approx(0.75) and row["iou"] == pytest.approx(0.75)
    assert row["volume_dice"] == {"p1": pytest.approx(1.0), "p2": pytest.approx(0.0)}
    assert row["volume_dice_mean"] == pytest.approx(0.5)
    assert row["params"] == 2 and row["flops"] == 2 * 8 * 8
    assert row["ms_per_image"] > 0
    assert "n_images" not in row and "n_volumes" not in row


def test_evaluate_model_without_volumes_reports_no_volume_scores() -> None:
    result = evaluate_model(Oracle(), ORACLE_META, slice_set(has_volumes=False), timing_repeats=1)
    assert "n_volumes" not in result and "volume_dice" not in result["levels"]["1"]
    assert result["levels"]["1"]["dice"] == pytest.approx(0.75)


def test_evaluate_model_levels_and_progress() -> None:
    model = NestedUNet(in_channels=1, base_width=4).eval()
    calls: list[tuple[float, str]] = []
    result = evaluate_model(model, ORACLE_META, slice_set(), levels=[2, "ens"], timing_repeats=1,
                            progress=lambda fraction, text: calls.append((fraction, text)))
    assert list(result["levels"]) == ["2", "ens"]
    assert result["levels"]["2"]["params"] == count_parameters(model, 2)
    assert result["levels"]["ens"]["flops"] == count_flops(model, "ens", 8)
    fractions = [f for f, _ in calls]
    assert calls[0] == (0.0, "segmenting") and calls[-1] == (1.0, "done")
    assert fractions == sorted(fractions)
    assert [text for _, text in calls if text.startswith("timing")] == ["timing level 2", "timing level ens"]
    with pytest.raises(ValueError, match="level 5 not available"):
        evaluate_model(model, ORACLE_META, slice_set(), levels=[5])


def test_evaluate_model_applies_each_levels_own_post_processing_rule() -> None:
    meta = ORACLE_META | {"postprocessing": {"threshold": 0.6, "min_component_fraction": 0.5, "hflip": False,
                                            "levels": {"1": {"threshold": 0.4}}}}
    post = evaluate_model(Oracle(), meta, slice_set(), timing_repeats=1)["levels"]["1"]["postprocessed"]
    assert post["rule"] == {"threshold": 0.4, "min_component_fraction": 0.5, "hflip": False}
    assert post["volume_dice"] == {"p1": pytest.approx(1.0), "p2": pytest.approx(0.0)}
