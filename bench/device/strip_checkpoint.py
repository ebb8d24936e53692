"""Drop the optimiser and training state from checkpoints (weights and metadata stay), to bring them back small."""
from __future__ import annotations

import sys

import torch

for path in sys.argv[1:]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in data.items() if k not in ("optimizer", "scheduler", "train_state_dict")}, path)
