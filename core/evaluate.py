"""``python -m core.evaluate``: quality, size and speed of a checkpoint at each pruning level.

Example::

    python -m core.evaluate --checkpoint checkpoints/unetpp_lgg.pt \\
        --data ../shared/data/lgg_mri/kaggle_3m --split val --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.checkpoint import CheckpointError, load_checkpoint
from core.data import DataError, load_source
from core.data.intensity import windows_of
from core.evaluation import evaluate_model, select_split, split_ids
from core.files import atomic_write
from core.levels import parse_level, short_name
from core.metrics import class_columns
from core.paths import DEFAULT_CHECKPOINT
from core.runtime import add_device_flags, autocast_dtype, reexec_with_tuned_malloc, select_device


def format_table(result: dict[str, Any]) -> str:
    """The evaluation result as an aligned text table, one row per level."""
    columns = ["dice", "iou", "volume_dice_mean", "volume_dice_median", "postprocessed_mean", "params", "flops",
               "ms_per_image"]
    rows = {level: row | ({"postprocessed_mean": row["postprocessed"]["volume_dice_mean"]} if "postprocessed" in row else {})
            for level, row in result["levels"].items()}
    per_class = class_columns(rows.values(), result.get("labels") or [])
    present = [c for c in columns if any(c in r for r in rows.values())] + [key for key, _, _ in per_class]
    headers = [c for c in present if "_class" not in c] + [
        f"{'vDice' if volume else 'Dice'} {name}"[:18] for _, volume, name in per_class]
    lines = [f"{'level':>6} " + " ".join(f"{h:>18}" for h in headers)]
    for level, row in rows.items():
        cells = []
        for c in present:
            v = row.get(c)
            cells.append(f"{'-':>18}" if v is None else f"{v:>18,}" if c in ("params", "flops") else f"{v:>18.4f}")
        lines.append(f"{short_name(level):>6} " + " ".join(cells))
    counts = f"{result['n_images']} images" + (f", {result['n_volumes']} volumes" if "n_volumes" in result else "")
    return "\n".join(lines + [counts])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--data", required=True, help="'synthetic', a kaggle_3m folder, an images/masks folder, or a NIfTI "
                                                 "dataset (nnU-Net v2 raw or MSD layout)")
    p.add_argument("--split", choices=["val", "train", "all"], default="val",
                   help="the checkpoint's validation (or training) volumes, or all slices")
    p.add_argument("--levels", nargs="+", default=None, help="levels to evaluate: 1 2 3 4 ens (default all)")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--cache", type=Path, default=None,
                   help="read a NIfTI dataset through this slice cache (core.train keeps one in .cache beside its "
                        "run folder), for data larger than memory; default: decode the cases asked for into memory")
    add_device_flags(p)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--timing-repeats", type=int, default=10, help="forward passes timed per level (median)")
    args = p.parse_args(argv)
    try:
        device = select_device(args.device)
        model, meta = load_checkpoint(args.checkpoint, device)
        pre = meta["preprocessing"]
        wanted = split_ids(meta, args.split)
        slices = load_source(args.data, pre.get("input_size"), model.in_channels, model.num_classes, wanted,
                             pre.get("intensity", "none"), windows_of(pre), pre.get("axis", "axial"), args.cache)
        slices = select_split(slices, meta, args.split)
        levels = [parse_level(level) for level in args.levels] if args.levels else None
        result = evaluate_model(model, meta, slices, levels, autocast_dtype(device, args.precision),
                                args.batch_size, args.timing_repeats)
    except (CheckpointError, DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result |= {"checkpoint": str(args.checkpoint), "data": args.data, "split": args.split,
               "device": str(device), "precision": args.precision, "labels": meta.get("labels")}
    print(format_table(result))
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    reexec_with_tuned_malloc("core.evaluate")
    sys.exit(main())
