"""``python -m core.export``: one pruning level of a checkpoint as an ONNX model.

The graph takes raw pixel values and returns probabilities, so a deployment needs only ONNX
Runtime and a resize::

    input  "image"          float32 (N, C, H, W), RGB pixel values 0..255, any N, H and W
    output "probabilities"  float32 (N, classes, H, W): sigmoid (one class) or softmax

Normalisation is inside the graph; resize inputs to the checkpoint's ``input_size`` (stored in the
ONNX metadata) for the accuracy the model was trained for. Only the nodes the level needs are
exported, so ``--level 1`` gives a small, fast file. Example::

    python -m core.export --level 2 --onnx unetpp_L2.onnx
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.checkpoint import CheckpointError, load_checkpoint
from core.inference import predict_level
from core.levels import LEVEL_HELP, Level, default_level, is_ensemble, level_key, model_levels, parse_level
from core.paths import DEFAULT_CHECKPOINT


class ExportedLevel(nn.Module):
    """Pixels 0..255 -> probabilities at one level, with the checkpoint's normalisation built in."""

    def __init__(self, model: nn.Module, level: Level, preprocessing: dict[str, Any]) -> None:
        super().__init__()
        self.model, self.level = model, level
        self.register_buffer("mean", torch.tensor(preprocessing["mean"]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing["std"]).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return predict_level(self.model, (image / 255 - self.mean) / self.std, self.level)


def export_onnx(model: nn.Module, meta: dict[str, Any], level: Level, path: Path, opset: int = 18) -> Path:
    """Write ``level`` of ``model`` to ``path`` (atomically) with dynamic batch, height and width."""
    model = model.float().eval().cpu()
    size = meta["preprocessing"].get("input_size") or 256
    wrapper = ExportedLevel(model, level, meta["preprocessing"]).eval()
    example = torch.rand(2, model.in_channels, size, size) * 255
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(wrapper, (example,), input_names=["image"], output_names=["probabilities"],
                                    dynamic_shapes={"image": dims}, opset_version=opset, dynamo=True, verbose=False)
        program.model.metadata_props.update({
            "unetpp_studio.level": level_key(level),
            "unetpp_studio.model": json.dumps(meta["model"]),
            "unetpp_studio.input_size": str(size),
            "unetpp_studio.normalization": "inside the graph: input is RGB pixel values 0..255",
        })
        program.save(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--level", default=None, help=LEVEL_HELP)
    p.add_argument("--onnx", type=Path, required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=18)
    args = p.parse_args(argv)
    try:
        model, meta = load_checkpoint(args.checkpoint)
        level = parse_level(args.level) if args.level else default_level(model)
        if is_ensemble(level) and len(model.levels) < 2:
            raise ValueError(f"--level {level} needs deep supervision; {args.checkpoint} has one head")
        if level not in model_levels(model):
            raise ValueError(f"--level {level}: {args.checkpoint} has levels {list(model.levels)}")
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    export_onnx(model, meta, level, args.onnx, args.opset)
    print(f"{args.checkpoint} level {level} -> {args.onnx} ({args.onnx.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
