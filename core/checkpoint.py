"""One-file checkpoints readable with ``torch.load(path, weights_only=True)``."""
from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.files import atomic_write
from core.models import ARCHITECTURES, build_model, config_from_state_dict, display_name, model_config

FORMAT = "unetpp-studio"
FORMAT_VERSION = 1
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def default_normalization(channels: int) -> dict[str, list[float]]:
    """ImageNet statistics for 3 channels (as the seed design), 0.5 / 0.25 otherwise."""
    if channels == 3:
        return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    return {"mean": [0.5] * channels, "std": [0.25] * channels}


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through ``core.files.atomic_write``: never a half-written checkpoint."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def make_checkpoint(model: nn.Module, input_size: int | None, normalization: dict, **meta: Any) -> dict[str, Any]:
    """The checkpoint dict: format, model config, preprocessing, fp32 state_dict and ``meta``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_config(model),
        "preprocessing": {"input_size": input_size, **normalization},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **meta,
    }


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``) with clear errors.

    A plain state_dict (as the seed blog post's code saves) is wrapped into our format with its
    architecture inferred from the parameter names and shapes by the registered architectures.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found:
            raise CheckpointError(
                f"{path}: holds pickled Python objects ({found[1]}), not only weights; loading it could run "
                "arbitrary code, so it is refused. If it is a whole model saved with torch.save(model, ...), "
                "re-save its weights in the code that made it: torch.save(model.state_dict(), "
                "'model_state.pth'), then load that file."
            ) from None
        raise CheckpointError(f"{path}: corrupt or not a PyTorch checkpoint") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or not a PyTorch checkpoint ({str(err).splitlines()[0]})") from None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: made by a newer UNet++ Studio (format {data['format_version']})")
        return data
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return _wrap_state_dict(path, data)
    raise CheckpointError(f"{path}: not a UNet++ Studio checkpoint or a UNet++/U-Net state_dict")


def _wrap_state_dict(path: Path, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Infer the model config of a bare state_dict (``config_from_state_dict`` of each architecture)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    config = config_from_state_dict(state)
    if config is None:
        known = "/".join(display_name(arch) for arch in ARCHITECTURES)
        raise CheckpointError(f"{path}: a state_dict, but not of a {known} (no layer names it knows)")
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": config,
        "preprocessing": {"input_size": None, **default_normalization(config["in_channels"])},
        "state_dict": state, "source": "state_dict",
    }


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Return ``(model in eval mode on device, metadata)`` from a checkpoint or bare state_dict.

    Example::

        model, meta = load_checkpoint("checkpoints/unetpp_lgg.pt")
        meta["model"]["arch"], meta["metrics"]["volume_dice_mean"]
    """
    model, meta = model_from(read_checkpoint(path), path)
    return model.to(device), meta


TRAINING_STATE = ("optimizer", "scheduler", "train_state_dict")  # what only --resume needs


def without_training_state(data: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint dict with weights and metadata only: what is shipped or brought back from a GPU machine."""
    return {k: v for k, v in data.items() if k not in TRAINING_STATE}


def model_from(data: dict[str, Any], path: str | Path = "checkpoint") -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode, metadata)`` from a checkpoint dict as ``read_checkpoint`` returns it.

    ``path`` only names the source in the ``CheckpointError`` raised when the weights do not fit.
    """
    try:
        model = build_model(data["model"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()})
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: weights do not fit the model they describe ({str(err).splitlines()[0]})") from None
    return model.eval(), {k: v for k, v in data.items() if k not in ("state_dict", "optimizer", "scheduler")}
