"""Dice / IoU per image and per volume, against values computed by hand."""
from __future__ import annotations

import pytest
import torch

from core.metrics import SegmentationMetrics, binarize, dice_score, iou_score


def mask(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([rows])


def test_dice_and_iou_by_hand() -> None:
    pred = mask([[1, 1, 0], [1, 0, 0]])   # 3 pixels
    truth = mask([[1, 0, 0], [1, 1, 1]])  # 4 pixels, 2 shared
    assert dice_score(pred, truth).item() == pytest.approx(2 * 2 / (3 + 4))
    assert iou_score(pred, truth).item() == pytest.approx(2 / 5)


def test_empty_prediction_and_empty_truth_score_one() -> None:
    empty = mask([[0, 0], [0, 0]])
    assert dice_score(empty, empty).item() == 1.0
    assert iou_score(empty, empty).item() == 1.0
    assert dice_score(mask([[1, 0], [0, 0]]), empty).item() == 0.0


def test_probabilities_are_thresholded_not_logits() -> None:
    probs = torch.tensor([[[[0.49, 0.51]]]])
    assert binarize(probs).tolist() == [[[0, 1]]]
    assert binarize(probs, threshold=0.6).tolist() == [[[0, 0]]]


def test_multi_class_averages_foreground_classes() -> None:
    pred = torch.tensor([[[0, 1, 2, 2]]])
    truth = torch.tensor([[[0, 1, 1, 2]]])
    # class 1: 2*1/(1+2) ; class 2: 2*1/(2+1)
    assert dice_score(pred, truth, num_classes=3).item() == pytest.approx(2 / 3)
    probs = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    m = SegmentationMetrics(num_classes=3)
    m.update(probs, truth)
    assert m.compute()["dice"] == pytest.approx(2 / 3)


def test_volume_dice_stacks_slices_of_a_patient() -> None:
    m = SegmentationMetrics()
    # patient a: slice 1 perfect (4 px), slice 2 misses 4 px; patient b: both empty
    truth = torch.zeros(4, 4, 4, dtype=torch.long)
    truth[0, :2, :2] = 1
    truth[1, 2:, 2:] = 1
    probs = torch.zeros(4, 1, 4, 4)
    probs[0, 0, :2, :2] = 0.9
    m.update(probs[:2], truth[:2], ["a", "a"])
    m.update(probs[2:], truth[2:], ["b", "b"])
    result = m.compute()
    assert m.per_volume() == {"a": pytest.approx(2 * 4 / (4 + 8)), "b": 1.0}
    assert result["volume_dice_mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["volume_dice_median"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["dice"] == pytest.approx((1 + 0 + 1 + 1) / 4)
    assert (result["n_images"], result["n_volumes"]) == (4, 2)


def test_metrics_without_volumes_report_no_volume_keys() -> None:
    m = SegmentationMetrics()
    m.update(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
    assert "volume_dice_mean" not in m.compute()
