"""A 2D task that is not MRI, trained with no flag but the data: the ISBI 2012 EM slices.

    python bench/em_check.py --data ../shared/data/em_isbi2012            # default, then --size 128
    python bench/em_check.py --data ... --variant default --threads 2

The 30 slices are one stack, so the split is contiguous: slices 0-23 train, 24-29 are held out
(neighbours are nearly alike; a random split would flatter the score). Each variant runs
``python -m core.train --data <train folder>`` plus its flags, then ``python -m core.predict``
on the held-out images, scored at their own 512 px against the masks: Dice of the cell interior
(255 in the masks, 78% of pixels) and of the membranes (0), pooled over the held-out slices.
Results go to ``docs/em_check.json``; ``docs/recipe.md`` quotes them.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's core/, when run as a script
from core.files import atomic_write  # noqa: E402

WORK = ROOT / "runs" / "em_check"
RESULTS = ROOT / "docs" / "em_check.json"
TRAIN = 24
VARIANTS = {
    "default": ("no flag but the data (the size follows it)", []),
    "size128": ("the previous fixed size, 128 px", ["--size", "128"]),
    "epochs200": ("four times the default length (200 epochs of 2 steps)", ["--epochs", "200"]),
    "positive": ("the previous sampling (every slice with foreground, plus a share of empty ones)",
                 ["--sampling", "positive"]),
    "seed1": ("no flag but the data, another seed (how much is seed noise?)", ["--seed", "1"]),
    "positive_seed1": ("the previous sampling, another seed", ["--sampling", "positive", "--seed", "1"]),
}


def split_folder(data: Path) -> tuple[Path, list[Path]]:
    """A train folder of links to the first ``TRAIN`` slices, and the held-out image paths."""
    names = sorted(p.name for p in (data / "images").iterdir())
    train = WORK / "train"
    shutil.rmtree(train, ignore_errors=True)
    for sub in ("images", "masks"):
        (train / sub).mkdir(parents=True)
        for name in names[:TRAIN]:
            (train / sub / name).symlink_to((data / sub / name).resolve())
    return train, [data / "images" / n for n in names[TRAIN:]]


def score(data: Path, held_out: list[Path], predictions: Path) -> dict[str, float]:
    """Pooled Dice of the interior and of the membranes at the masks' own size."""
    overlap, total = np.zeros(2), np.zeros(2)
    for image in held_out:
        truth = cv2.imread(str(data / "masks" / image.name), cv2.IMREAD_GRAYSCALE) > 127
        guess = cv2.imread(str(predictions / f"{image.stem}_mask.png"), cv2.IMREAD_GRAYSCALE) > 127
        for k, (a, b) in enumerate([(truth, guess), (~truth, ~guess)]):
            overlap[k] += np.count_nonzero(a & b)
            total[k] += np.count_nonzero(a) + np.count_nonzero(b)
    dice = 2 * overlap / total
    return {"interior_dice": round(float(dice[0]), 4), "membrane_dice": round(float(dice[1]), 4)}


def run_variant(name: str, data: Path, threads: int) -> dict:
    train, held_out = split_folder(data)
    out = WORK / name
    shutil.rmtree(out, ignore_errors=True)
    flags = VARIANTS[name][1] + ["--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core.train", "--data", str(train), "--out", str(out / "run"), *flags],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    minutes = (time.perf_counter() - start) / 60
    subprocess.run([sys.executable, "-m", "core.predict", "--checkpoint", str(out / "run" / "best.pt"),
                    "--out", str(out / "pred"), *map(str, held_out)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    size = json.loads((out / "run" / "config.json").read_text())["size"]
    return {"variant": name, "what": VARIANTS[name][0], "flags": VARIANTS[name][1], "size": size,
            "train_minutes": round(minutes, 1), "threads": threads, **score(data, held_out, out / "pred")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--variant", action="append", choices=list(VARIANTS))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.variant or list(VARIANTS):
        results[name] = run_variant(name, args.data.resolve(), args.threads)
        print(json.dumps(results[name]), flush=True)
        atomic_write(RESULTS, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
