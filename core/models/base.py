"""What every segmentation network provides: the protocol the trainer, the CLIs and the app rely on."""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn


COMMON = ["in_channels", "num_classes", "base_width", "depth"]


class SegmentationNet(nn.Module):
    """Base class of the registered architectures (``core.models.ARCHITECTURES``).

    A subclass sets ``arch`` (its registry name, stored in checkpoints) and ``display_name`` (how
    the app names it), takes at least ``in_channels``, ``num_classes``, ``base_width`` and
    ``depth`` in its constructor, stores them as attributes, and implements
    ``forward(x, level=None)``: every head's logits (a list, with deep supervision) or one
    tensor; with ``level=k`` only head ``k``'s logits, at the input's height and width.

    Heads are 1x1 convolutions (``add_heads``): ``final1..final{depth}``, one per level, with
    ``deep_supervision``, else one ``final`` at level ``depth``; ``levels`` and ``head`` follow
    from that. A network with several heads overrides ``prune`` (a single head's is the model).
    ``config`` saves every constructor argument stored as an attribute of the same name, and
    ``from_config`` rebuilds the model from it (override both for anything else).
    ``config_from_state_dict`` lets a bare state_dict of the architecture load (optional).
    """

    arch: str = ""
    display_name: str = ""
    deep_supervision: bool = False
    in_channels: int
    num_classes: int
    base_width: int
    depth: int

    def add_heads(self, channels: int) -> None:
        """The 1x1 heads on ``channels`` features: ``final1..final{depth}`` or ``final``."""
        if self.deep_supervision:
            for k in range(1, self.depth + 1):
                self.add_module(f"final{k}", nn.Conv2d(channels, self.num_classes, 1))
        else:
            self.final = nn.Conv2d(channels, self.num_classes, 1)

    @property
    def levels(self) -> list[int]:
        """Pruning levels this model can be evaluated at, one per head, shallowest first."""
        return list(range(1, self.depth + 1)) if self.deep_supervision else [self.depth]

    def check_level(self, level: int) -> None:
        if level not in self.levels:
            raise ValueError(f"level {level} not available; this model has levels {self.levels}")

    def head(self, level: int) -> nn.Module:
        """The output layer of head ``level``."""
        self.check_level(level)
        return getattr(self, f"final{level}") if self.deep_supervision else self.final

    def prune(self, level: int) -> nn.Module:
        """A standalone model computing only head ``level``: ``prune(k)(x) == self(x, level=k)``."""
        self.check_level(level)
        return self

    @classmethod
    def arguments(cls) -> list[str]:
        """The constructor's argument names: the four every network takes first, then its own."""
        own = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
        return [*COMMON, *(name for name in own if name not in COMMON)]

    def config(self) -> dict[str, Any]:
        """The constructor arguments, read from the attributes of the same names, as a JSON-able dict
        (``core.models.model_config`` adds ``arch``)."""
        return {name: getattr(self, name) for name in self.arguments() if hasattr(self, name)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SegmentationNet":
        """The model ``config`` describes; keys the constructor does not take are ignored."""
        accepted = cls.arguments()
        return cls(**{k: v for k, v in config.items() if k in accepted})

    @classmethod
    def config_from_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
        """The config of a bare state_dict of this architecture, or None if it is not one."""
        return None
