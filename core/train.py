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
from pathlib import Path

from core.checkpoint import CheckpointError
from core.data import DataError
from core.runtime import reexec_with_tuned_malloc
from core.training.config import TrainConfig
from core.training.trainer import Trainer


_UNSET = object()


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=d.data, help="'synthetic', a kaggle_3m folder, or a folder with images/ and masks/")
    p.add_argument("--out", default=d.out, help="run folder (config, split, history.jsonl, best.pt, last.pt)")
    p.add_argument("--arch", choices=["unetpp", "unet"], default=d.arch)
    p.add_argument("--width", type=int, default=d.width, help="filters of the first level (n in n*[1,2,4,8,16])")
    p.add_argument("--no-deep-supervision", dest="deep_supervision", action="store_false",
                   help="one head on x0_4 instead of four (UNet++ only)")
    p.add_argument("--ds-weights", type=float, nargs="+", default=None, help="loss weight per head (default equal)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--size", type=int, default=d.size, help="slices are resized to size x size")
    p.add_argument("--alpha", type=float, default=d.alpha, help="loss = alpha*BCE + (1-alpha)*soft Dice")
    p.add_argument("--batch-dice", action="store_true",
                   help="Dice term over the whole batch, not per image (empty slices cost only their false positives)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of volumes (patients) held out")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: all cores); 1 when several runs share a small CPU")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=d.precision,
                   help="auto: bf16 autocast on CPUs with bf16 support, AMP on CUDA, else fp32")
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping: epochs without a better score")
    p.add_argument("--lr-patience", type=int, default=d.lr_patience,
                   help="ReduceLROnPlateau: epochs without a better validation IoU before lr is divided by 10")
    p.add_argument("--empty-fraction", type=float, default=d.empty_fraction,
                   help="share of slices with an empty mask drawn each epoch (all non-empty ones always are)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that would pass this time")
    p.add_argument("--max-volumes", type=int, default=None,
                   help="use only the first N volumes (patients), sorted by id: for quick tries")
    p.add_argument("--in-channels", type=int, default=d.in_channels)
    p.add_argument("--num-classes", type=int, default=d.num_classes, help=">1: softmax over class-index masks")
    p.add_argument("--init-from", default=None,
                   help="start from this checkpoint's weights (fine-tuning); its architecture must match")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt, with its saved settings (flags given override them)")
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
