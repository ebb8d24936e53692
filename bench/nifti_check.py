"""The NIfTI path against the kaggle_3m path on the real LGG data: same settings, same seed.

    python bench/nifti_check.py --data ../shared/data/lgg_mri/kaggle_3m --nifti /tmp/Dataset501_LGG

Converts the 74 patients with ``python -m core.convert`` (unless ``--nifti`` exists already),
trains ``python -m core.train`` on each layout with the same flags (fold 0 of 3, 2 epochs, one
thread, seed 0) and compares the split, every step's loss and every epoch's validation metrics.
Training is seeded end to end, so the two agree exactly when the converter and the NIfTI reader
give back the TIFF slices. Results go to ``docs/nifti_check.json``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's core/, when run as a script
from core.files import atomic_write  # noqa: E402
from core.training.history import read_history  # noqa: E402

WORK = ROOT / "runs" / "nifti_check"
RESULTS = ROOT / "docs" / "nifti_check.json"
FLAGS = ["--epochs", "2", "--folds", "3", "--fold", "0", "--threads", "1", "--seed", "0"]


def train(data: Path, name: str) -> dict:
    out = WORK / name
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "core.train", "--data", str(data), "--out", str(out), *FLAGS],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = read_history(out / "history.jsonl")
    return {
        "data": str(data),
        "split": json.loads((out / "split.json").read_text()),
        "losses": [e["loss"] for e in events if e["event"] == "step"],
        "val": [{k: e["val"][k] for k in ("dice", "volume_dice_mean", "volume_dice_median")}
                for e in events if e["event"] == "epoch"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the kaggle_3m folder")
    p.add_argument("--nifti", type=Path, required=True, help="where the converted dataset is (or goes)")
    args = p.parse_args()
    if not args.nifti.exists():
        subprocess.run([sys.executable, "-m", "core.convert", str(args.data), str(args.nifti)], cwd=ROOT, check=True)
    runs = {"kaggle_3m": train(args.data.resolve(), "kaggle"), "nnunet": train(args.nifti.resolve(), "nifti")}
    a, b = runs["kaggle_3m"], runs["nnunet"]
    result = {
        "flags": FLAGS,
        "same_split": {k: a["split"][k] for k in ("train", "val")} == {k: b["split"][k] for k in ("train", "val")},
        "same_losses": a["losses"] == b["losses"],
        "steps": len(a["losses"]),
        "val": {name: run["val"] for name, run in runs.items()},
    }
    atomic_write(RESULTS, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "flags"}, indent=1))


if __name__ == "__main__":
    main()
