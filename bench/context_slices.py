"""2.5D, measured before it is built: does a slice's neighbours as extra channels pay?

    python bench/context_slices.py --data ../shared/data/lgg_mri/kaggle_3m --out runs/c1 --context 1 \\
        [any python -m core.train flag]

Trains exactly as ``python -m core.train`` with the same flags, except that each slice's input
is the slice with the ``--context`` slices above and below it in its volume (the volume's edge
slices repeat themselves), stacked as channels: 3 x (2·context + 1) for LGG's RGB slices. The
intensity augmentation draws once per MRI sequence, so a sequence changes alike on all of its
slices; the normalisation repeats the 3-channel statistics. ``bench/recipe.py`` runs it as the
``context1`` variant on the study's folds and budget. It stays a measurement: the product's
inference (scans, uploads, export) takes one slice, and takes neighbours only if this pays.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's core/, when run as a script
from core.checkpoint import default_normalization  # noqa: E402
from core.data import load_source  # noqa: E402
from core.data.augmentation import ChannelIntensity  # noqa: E402
from core.data.slices import SliceSet  # noqa: E402
from core.train import parse_args  # noqa: E402
from core.training.trainer import Trainer  # noqa: E402


def with_context(slices: SliceSet, context: int) -> SliceSet:
    """Each slice as the ``context`` slices before it, itself and the ones after it, stacked along channels;
    neighbours come from the slice's own volume (slices are in order within it; edges repeat).

    Example:
        >>> images = np.arange(3, dtype=np.uint8).reshape(3, 1, 1, 1).repeat(2, 1).repeat(2, 2)
        >>> s = SliceSet(images, np.zeros((3, 2, 2), np.uint8), ["a", "a", "b"], ["a_1", "a_2", "b_1"])
        >>> with_context(s, 1).images[:, 0, 0].tolist()
        [[0, 0, 1], [0, 1, 1], [2, 2, 2]]
    """
    volumes = np.asarray(slices.volumes)
    starts = {v: i for i, v in reversed(list(enumerate(slices.volumes)))}
    ends = {v: i for i, v in enumerate(slices.volumes)}
    index = np.arange(len(slices))
    first = np.array([starts[v] for v in volumes])
    last = np.array([ends[v] for v in volumes])
    images = np.asarray(slices.images)
    stacked = [images[np.clip(index + offset, first, last)] for offset in range(-context, context + 1)]
    return SliceSet(np.concatenate(stacked, axis=-1), slices.masks, slices.volumes, slices.names, slices.has_volumes)


def tie_intensity_draws(sequences: int) -> None:
    """Make ``ChannelIntensity`` draw once per sequence and repeat it over the stacked slices."""
    draw = ChannelIntensity.get_params_dependent_on_data

    def tied(self: ChannelIntensity, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        one = draw(self, params, {"image": data["image"][..., :sequences]})
        return {k: np.tile(v, data["image"].shape[-1] // sequences) for k, v in one.items()}
    ChannelIntensity.get_params_dependent_on_data = tied


class ContextTrainer(Trainer):
    """The trainer, with the single slice's normalisation repeated over its neighbours' channels."""

    def __init__(self, config: Any, data: SliceSet, sequences: int) -> None:
        super().__init__(config, data=data)
        self.sequences = sequences

    def _setup_data(self, resume_state: dict[str, Any] | None, windows: dict[int, tuple[float, float]]) -> None:
        super()._setup_data(resume_state, windows)
        copies = self.config.in_channels // self.sequences
        self.normalization |= {k: v * copies for k, v in default_normalization(self.sequences).items()}


def main(argv: list[str]) -> int:
    own = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    own.add_argument("--context", type=int, required=True, help="slices taken on each side")
    args, train_flags = own.parse_known_args(argv)
    context, config = args.context, parse_args(train_flags)
    sequences = 3
    config.in_channels, config.num_classes = sequences * (2 * context + 1), 1
    config.intensity = config.intensity or "volume"  # the trainer's choice for MRI, made here as the data is loaded
    slices = load_source(config.data, config.size, sequences, 1, intensity=config.intensity)
    tie_intensity_draws(sequences)
    ContextTrainer(config, with_context(slices, context), sequences).fit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
