"""``python -m core.predict``: segment images and write one mask PNG per input.

Example::

    python -m core.predict --level 2 scan1.tif scan2.png --out masks/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from core.checkpoint import CheckpointError, load_checkpoint
from core.data import DataError, read_image
from core.evaluate import DEFAULT_CHECKPOINT
from core.inference import parse_level, probabilities_to_mask, segment_image
from core.runtime import autocast_dtype, select_device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+", type=Path, help="image files (PNG, JPG, TIFF, BMP)")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--level", default=None, help="pruning level 1..4 or 'ens' (default: the deepest head)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability above which a pixel is lesion")
    p.add_argument("--out", type=Path, required=True, help="folder for <input name>_mask.png files")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    args = p.parse_args(argv)
    try:
        device = select_device(args.device)
        model, meta = load_checkpoint(args.checkpoint, device)
        level = parse_level(args.level) if args.level else max(model.levels)
        dtype = autocast_dtype(device, args.precision)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in args.inputs:
        try:
            image = read_image(path, model.in_channels)
            probs = segment_image(model, meta["preprocessing"], image, level, dtype)
        except (DataError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        mask = probabilities_to_mask(probs, args.threshold)
        target = args.out / f"{path.stem}_mask.png"
        cv2.imwrite(str(target), mask)
        share = (mask > 0).mean() * 100
        print(f"{path} -> {target} ({share:.2f}% lesion)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
