"""Model zoo: one file per architecture, registered here by name.

``ARCHITECTURES`` is the one list of architectures: the ``--arch`` choices, the Train page's
options, checkpoint loading and the shared model tests (``tests/test_models.py``) come from it.
Each class implements ``SegmentationNet`` (``core/models/base.py``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.models.base import SegmentationNet
from core.models.unet import UNet
from core.models.unetpp import NestedUNet

ARCHITECTURES: dict[str, type[SegmentationNet]] = {
    "unetpp": NestedUNet,
    "unet": UNet,
}


def model_config(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments of ``model`` as a JSON-able dict (``arch`` included)."""
    return {"arch": model.arch, **model.config()}


def build_model(config: dict[str, Any]) -> SegmentationNet:
    """Build a model from ``model_config``'s dict (extra keys are ignored)."""
    arch = config.get("arch", "unetpp")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch].from_config(config)


def display_name(arch: str) -> str:
    """How the app names an architecture (``"UNet++"``); the name itself if it is not registered."""
    cls = ARCHITECTURES.get(arch)
    return (cls.display_name or arch) if cls else arch


def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The config of a bare state_dict, from the first architecture that recognises it; else None."""
    for arch, cls in ARCHITECTURES.items():
        config = cls.config_from_state_dict(state)
        if config is not None:
            return {"arch": arch, **config}
    return None


__all__ = ["ARCHITECTURES", "NestedUNet", "SegmentationNet", "UNet", "build_model", "config_from_state_dict",
           "display_name", "model_config"]
