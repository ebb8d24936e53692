"""Dice and IoU per image and per patient volume, computed in torch on the model's device.

Convention: predictions are probabilities thresholded at ``threshold`` (binary) or the arg-max
class (multi-class), never raw logits. A score whose prediction and truth are both empty is 1.0
(nothing to find, nothing found). Multi-class scores average the foreground classes 1..C-1.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch


def binarize(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``(N, C, H, W)`` probabilities -> ``(N, H, W)`` class indices (0/1 for ``C == 1``).

    Example:
        >>> binarize(torch.tensor([[[[0.7, 0.2]]]])).tolist()  # one channel: threshold 0.5
        [[[1, 0]]]
        >>> binarize(torch.tensor([[[[0.1, 0.6]], [[0.9, 0.4]]]])).tolist()  # two classes: arg-max
        [[[1, 0]]]
    """
    if probs.shape[1] == 1:
        return (probs[:, 0] >= threshold).long()
    return probs.argmax(dim=1)


def overlap_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 1) -> torch.Tensor:
    """Per image and foreground class: ``[intersection, |pred|, |truth|]`` -> ``(N, K, 3)``.

    ``pred`` and ``target`` are ``(N, H, W)`` class-index maps; ``K = max(1, num_classes - 1)``.

    Example:
        >>> overlap_counts(torch.tensor([[[1, 1], [0, 0]]]), torch.tensor([[[1, 0], [0, 0]]])).tolist()
        [[[1.0, 2.0, 1.0]]]
    """
    if target.ndim == 4:
        target = target[:, 0]
    classes = [1] if num_classes == 1 else range(1, num_classes)
    counts = []
    for c in classes:
        p, t = pred == c, target == c
        counts.append(torch.stack([(p & t).sum((1, 2)), p.sum((1, 2)), t.sum((1, 2))], dim=-1))
    return torch.stack(counts, dim=1).double()


def dice_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Dice ``2|P∩T| / (|P| + |T|)`` from ``overlap_counts``; 1.0 where both are empty."""
    inter, p, t = counts.unbind(-1)
    denom = p + t
    return torch.where(denom > 0, 2 * inter / denom.clamp(min=1), torch.ones_like(denom))


def iou_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """IoU ``|P∩T| / |P∪T|`` from ``overlap_counts``; 1.0 where both are empty."""
    inter, p, t = counts.unbind(-1)
    union = p + t - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def dice_score(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 1) -> torch.Tensor:
    """Per-image Dice of class-index maps, averaged over foreground classes -> ``(N,)``.

    Example:
        >>> pred = torch.tensor([[[1, 1], [0, 0]]]); truth = torch.tensor([[[1, 0], [0, 0]]])
        >>> dice_score(pred, truth).tolist()  # 2*1 / (2 + 1)
        [0.6666666666666666]
    """
    return dice_from_counts(overlap_counts(pred, target, num_classes)).mean(1)


def iou_score(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 1) -> torch.Tensor:
    """Per-image IoU of class-index maps, averaged over foreground classes -> ``(N,)``.

    Example:
        >>> pred = torch.tensor([[[1, 1], [0, 0]]]); truth = torch.tensor([[[1, 0], [0, 0]]])
        >>> iou_score(pred, truth).tolist(), iou_score(truth * 0, truth * 0).tolist()  # 1 / 2; both empty
        ([0.5], [1.0])
    """
    return iou_from_counts(overlap_counts(pred, target, num_classes)).mean(1)


class SegmentationMetrics:
    """Accumulates per-image and per-volume Dice/IoU over batches without leaving the device.

    ``volume_dice`` stacks all slices of a volume (a patient) and computes one Dice over the
    stack, the metric of the LGG literature (Buda et al. 2019).

    Example:
        >>> m = SegmentationMetrics()
        >>> probs = torch.tensor([[[[0.9, 0.2], [0.1, 0.0]]]])
        >>> m.update(probs, torch.tensor([[[1, 1], [0, 0]]]), volume_ids=["p1"])
        >>> {k: round(v, 3) for k, v in m.compute().items() if k in ("dice", "iou")}
        {'dice': 0.667, 'iou': 0.5}
    """

    def __init__(self, num_classes: int = 1, threshold: float = 0.5) -> None:
        self.num_classes, self.threshold = num_classes, threshold
        self.reset()

    def reset(self) -> None:
        self._image_counts: list[torch.Tensor] = []
        self._volume_counts: dict[str, torch.Tensor] = {}

    def update(self, probs: torch.Tensor, target: torch.Tensor, volume_ids: Sequence[str] | None = None) -> None:
        """Add a batch of probabilities ``(N, C, H, W)`` and targets ``(N, H, W)``."""
        counts = overlap_counts(binarize(probs, self.threshold), target, self.num_classes)
        self._image_counts.append(counts)
        for vid in set(volume_ids or ()):
            rows = [i for i, v in enumerate(volume_ids) if v == vid]
            summed = counts[rows].sum(0)
            prev = self._volume_counts.get(vid)
            self._volume_counts[vid] = summed if prev is None else prev + summed

    def cpu(self) -> "SegmentationMetrics":
        """Move the accumulated counts to the CPU (to send them to another process); returns self."""
        self._image_counts = [c.cpu() for c in self._image_counts]
        self._volume_counts = {vid: c.cpu() for vid, c in self._volume_counts.items()}
        return self

    def merge(self, other: "SegmentationMetrics") -> None:
        """Add ``other``'s images and volumes to these (e.g. another process's share of the data)."""
        other.cpu()
        self.cpu()
        self._image_counts.extend(other._image_counts)
        for vid, c in other._volume_counts.items():
            prev = self._volume_counts.get(vid)
            self._volume_counts[vid] = c if prev is None else prev + c

    def per_image(self) -> dict[str, torch.Tensor]:
        """Per-image ``dice`` and ``iou`` tensors, in update order."""
        counts = torch.cat(self._image_counts) if self._image_counts else torch.zeros(0, 1, 3)
        return {"dice": dice_from_counts(counts).mean(1), "iou": iou_from_counts(counts).mean(1)}

    def per_volume(self) -> dict[str, float]:
        """Volume Dice of each volume id seen."""
        return {vid: dice_from_counts(c).mean().item() for vid, c in sorted(self._volume_counts.items())}

    def compute(self) -> dict[str, float]:
        """``dice``, ``iou`` (means over images and foreground classes), ``n_images``; with volume ids
        also ``volume_dice_mean``, ``volume_dice_median`` and ``n_volumes``; with several classes
        also ``per_class``."""
        per_image = self.per_image()
        n = len(per_image["dice"])
        result = {
            "dice": per_image["dice"].mean().item() if n else float("nan"),
            "iou": per_image["iou"].mean().item() if n else float("nan"),
            "n_images": n,
        }
        if self._volume_counts:
            vols = torch.tensor(list(self.per_volume().values()), dtype=torch.float64)
            result |= {
                "volume_dice_mean": vols.mean().item(),
                "volume_dice_median": vols.quantile(0.5).item(),
                "n_volumes": len(vols),
            }
        if self.num_classes > 1 and n:
            result |= self.per_class()
        return result

    def per_class(self) -> dict[str, float]:
        """``dice_class<k>`` (mean over images) for each foreground class k, and with volume ids
        ``volume_dice_class<k>`` (mean over volumes)."""
        images = dice_from_counts(torch.cat(self._image_counts)).mean(0)
        result = {f"dice_class{k + 1}": images[k].item() for k in range(len(images))}
        if self._volume_counts:
            volumes = torch.stack([dice_from_counts(c) for c in self._volume_counts.values()]).mean(0)
            result |= {f"volume_dice_class{k + 1}": volumes[k].item() for k in range(len(volumes))}
        return result


def class_columns(rows: Iterable[Mapping[str, float]], names: Sequence[str] = ()) -> list[tuple[str, bool, str]]:
    """The per-class metrics in ``rows`` as ``(key, is volume Dice, class name)``, image Dice first.

    ``names`` are the label names by value (background first); unnamed classes are ``class <k>``.

    Example:
        >>> class_columns([{"dice": 0.8, "dice_class2": 0.7, "volume_dice_class1": 0.6}], ["bg", "core"])
        [('dice_class2', False, 'class 2'), ('volume_dice_class1', True, 'core')]
    """
    keys = sorted({k for row in rows for k in row if "_class" in k}, key=lambda k: (k.startswith("volume"), k))
    columns = []
    for key in keys:
        metric, k = key.rsplit("_class", 1)
        columns.append((key, metric.startswith("volume"), names[int(k)] if int(k) < len(names) else f"class {k}"))
    return columns


def headline(rows: Iterable[Mapping[str, float]]) -> tuple[str, str]:
    """``(key, label)`` of the score models are judged by: volume Dice where every row has it, else Dice.

    The trainer keeps ``best.pt`` by it, and the pages rank and recommend levels by it.

    Example:
        >>> headline([{"dice": 0.9, "volume_dice_mean": 0.8}]), headline([{"dice": 0.9}]), headline([])
        (('volume_dice_mean', 'volume Dice'), ('dice', 'Dice'), ('dice', 'Dice'))
    """
    rows = list(rows)
    if rows and all("volume_dice_mean" in row for row in rows):
        return "volume_dice_mean", "volume Dice"
    return "dice", "Dice"
