"""``python -m core.train``: train a UNet++ or U-Net and leave a reproducible run folder.

Example::

    python -m core.train --data synthetic --epochs 2 --width 8 --size 64 --out /tmp/r
    python -m core.train --data ../shared/data/lgg_mri/kaggle_3m --out runs/lgg --epochs 30
    python -m core.train --out runs/lgg --resume --epochs 40
    torchrun --nproc_per_node=2 -m core.train --data synthetic --out /tmp/ddp   # DistributedDataParallel
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any

from core.checkpoint import CheckpointError
from core.data import DataError
from core.runtime import reexec_with_tuned_malloc
from core.training.config import TrainConfig, cli_fields, default_of, flag_of
from core.training.trainer import Trainer


_UNSET = object()


def _value_type(annotation: Any) -> tuple[type, bool]:
    """``(element type, is a list)`` of a field's annotation, ``None`` unions removed."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    inner = args[0]
    if typing.get_origin(inner) is list:
        return typing.get_args(inner)[0], True
    return inner, False


def build_parser() -> argparse.ArgumentParser:
    """The parser, one flag per ``TrainConfig`` field, with the field's help and choices."""
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for f in cli_fields():
        kind, is_list = _value_type(hints[f.name])
        default, extra = default_of(f), {}
        if kind is bool:  # switches come in both forms: --batch-dice / --no-batch-dice
            extra["action"] = argparse.BooleanOptionalAction
        else:
            extra["type"], extra["choices"] = kind, f.metadata.get("choices")
            if is_list:
                extra["nargs"] = "+"
        p.add_argument(flag_of(f), dest=f.name, default=default, help=f.metadata.get("help") or None, **extra)
    return p


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Flags -> ``TrainConfig``. With ``--resume`` the run's ``config.json`` supplies every flag not given."""
    parser = build_parser()
    defaults = vars(parser.parse_args([]))
    parsed = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(defaults, _UNSET)))
    given = {k: v for k, v in vars(parsed).items() if v is not _UNSET}
    base = defaults
    saved = Path(given.get("out", defaults["out"])) / "config.json"
    if given.get("resume") and saved.exists():
        base = TrainConfig.from_dict(json.loads(saved.read_text())).to_dict()
    return TrainConfig.from_dict({**base, **given})


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        summary = Trainer(config).fit()
    except (DataError, CheckpointError, FileExistsError, FileNotFoundError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the group
        print(json.dumps({k: v for k, v in summary.items() if k != "event"}))
    return 0


if __name__ == "__main__":
    reexec_with_tuned_malloc("core.train")
    sys.exit(main())
