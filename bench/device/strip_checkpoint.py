"""Drop the optimiser and training state from checkpoints (weights and metadata stay), to bring them back small.

    python3 bench/device/strip_checkpoint.py runs/*/last.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from core.checkpoint import without_training_state  # noqa: E402


def main(paths: list[str]) -> None:
    for path in paths:
        torch.save(without_training_state(torch.load(path, map_location="cpu", weights_only=True)), path)


if __name__ == "__main__":  # importing it (pytest --doctest-modules bench) must not rewrite files
    main(sys.argv[1:])
