"""Model zoo: one file per architecture, built from a plain config dict."""
from __future__ import annotations

from typing import Any

from torch import nn

from core.models.unet import UNet
from core.models.unetpp import NestedUNet

ARCHITECTURES = {"unetpp": NestedUNet, "unet": UNet}


def model_config(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments of ``model`` as a JSON-able dict (``arch`` included)."""
    config = {
        "arch": model.arch,
        "in_channels": model.in_channels,
        "num_classes": model.num_classes,
        "base_width": model.base_width,
        "depth": model.depth,
    }
    if model.arch == "unetpp":
        config["deep_supervision"] = model.deep_supervision
        config["pad_multiple"] = model.pad_multiple
    return config


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build a model from ``model_config``'s dict (extra keys are ignored)."""
    arch = config.get("arch", "unetpp")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    keys = ["in_channels", "num_classes", "base_width", "depth"]
    if arch == "unetpp":
        keys += ["deep_supervision", "pad_multiple"]
    return ARCHITECTURES[arch](**{k: config[k] for k in keys if k in config})


__all__ = ["ARCHITECTURES", "NestedUNet", "UNet", "build_model", "model_config"]
