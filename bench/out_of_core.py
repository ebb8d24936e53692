"""Out-of-core training: peak memory of ``core.train`` on NIfTI datasets far larger than that memory.

    python bench/out_of_core.py --json docs/out_of_core.json            # ~17 GB of disk, ~15 minutes

Writes synthetic nnU-Net datasets (one int16 channel, as MRI is stored, 256 x 256 x 200 voxels per case, a lesion in
each), then measures, each in a fresh process:

- **in memory**: decoding the small dataset the way training did before the cache
  (``load_source`` without a cache), which needs all of it in RAM;
- **cache**: ``python -m core.train`` for one minute (width 4, batch 2, no validation) reading slices from
  the cache (``core.data.cache``), first on the small dataset, then on one 15 times larger whose
  decoded slices are 10 times the memory the run is allowed: where this machine has a cgroup-v1
  memory controller (Linux, as root), the run is confined to a memory limit (page cache
  included) of a tenth of the decoded size; elsewhere only its peak RSS is reported.

Peak RSS is ``getrusage``'s ``ru_maxrss`` of the process that did the work.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from core.files import atomic_write  # noqa: E402
from core.training.history import read_history  # noqa: E402

SIZE, SLICES = 256, 200
CGROUP = Path("/sys/fs/cgroup/memory/unetpp_out_of_core")
PEAK = "import resource, sys; print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"


def make_dataset(root: Path, cases: int) -> int:
    """An nnU-Net raw dataset of ``cases`` synthetic volumes; returns its decoded size in bytes (slices + masks)."""
    import nibabel as nib

    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:SIZE, :SIZE, :SLICES]
    for i in range(cases):
        cx, cy, cz, r = *rng.integers(80, 176, 2), rng.integers(60, 140), rng.integers(12, 30)
        lesion = ((z - cx) ** 2 + (y - cy) ** 2 + ((x - cz) * 0.5) ** 2) < r ** 2
        head = ((z - 128) ** 2 + (y - 128) ** 2) < 110 ** 2
        image = (rng.integers(0, 300, (SIZE, SIZE, SLICES), dtype=np.int16) + 600 * head + 900 * lesion).astype(np.int16)
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / "imagesTr" / f"case{i:04d}_0000.nii")
        nib.save(nib.Nifti1Image(lesion.astype(np.uint8), np.eye(4)), root / "labelsTr" / f"case{i:04d}.nii")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {"background": 0,
                                                   "lesion": 1}, "numTraining": cases, "file_ending": ".nii"}))
    return cases * SLICES * SIZE * SIZE * 2


def confine(limit_bytes: int | None) -> Any:
    """A ``preexec_fn`` that puts the child in a memory cgroup of ``limit_bytes`` (None: no limit)."""
    if limit_bytes is None:
        return None
    CGROUP.mkdir(exist_ok=True)
    (CGROUP / "memory.limit_in_bytes").write_text(str(limit_bytes))
    return lambda: (CGROUP / "cgroup.procs").write_text(str(os.getpid()))


def measure(code: str, limit_bytes: int | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh Python; its peak RSS, wall time, exit status and last line of output."""
    start = time.time()
    result = subprocess.run([sys.executable, "-c", code + "\n" + PEAK], cwd=ROOT, capture_output=True, text=True,
                            preexec_fn=confine(limit_bytes), env={**os.environ, "TQDM_DISABLE": "1"})
    peak = [line for line in result.stderr.splitlines() if line.startswith("PEAK ")]
    row = {"exit": result.returncode, "minutes": round((time.time() - start) / 60, 2),
           "peak_rss_mb": round(int(peak[-1].split()[1]) / 1024) if peak else None}
    if result.returncode:
        row["error"] = result.stderr.strip().splitlines()[-1][:300] if result.stderr.strip() else ""
    return row


def train_code(data: Path, out: Path, cache: Path) -> str:
    argv = ["--data", str(data), "--out", str(out), "--cache", str(cache), "--size", str(SIZE), "--width", "4",
            "--batch-size", "2", "--val-fraction", "0", "--budget-minutes", "1", "--threads", "1", "--seed", "0"]
    return f"from core.train import main\nrc = main({argv!r})\nassert rc == 0, rc"


def steps_done(run: Path) -> int:
    return sum(1 for e in read_history(run / "history.jsonl") if e["event"] == "step")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "out_of_core", help="datasets, caches and runs")
    p.add_argument("--small", type=int, default=16, help="cases of the small dataset")
    p.add_argument("--large", type=int, default=240, help="cases of the large dataset")
    p.add_argument("--keep", action="store_true", help="keep the datasets and caches (about 17 GB)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    can_limit = sys.platform == "linux" and os.access(CGROUP.parent, os.W_OK)
    rows: dict[str, Any] = {}
    for name, cases in (("small", args.small), ("large", args.large)):
        data, cache = args.work / name / "data", args.work / name / "cache"
        decoded = make_dataset(data, cases)
        base = {"cases": cases, "slices": cases * SLICES, "decoded_gb": round(decoded / 1e9, 2)}
        if name == "small":
            rows["small, in memory"] = base | measure(
                f"from core.data import load_source\nload_source({str(data)!r}, {SIZE}, 1, 1, intensity='volume')")
        limit = decoded // 10 if name == "large" and can_limit else None
        run = args.work / name / "run"
        rows[f"{name}, cache"] = base | {"memory_limit_mb": limit and round(limit / 2 ** 20)} | measure(
            train_code(data, run, cache), limit)
        if (run / "history.jsonl").exists():
            rows[f"{name}, cache"]["training_steps"] = steps_done(run)
        print(json.dumps({k: v for k, v in rows.items() if k.startswith(name)}), flush=True)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "slice": f"{SIZE}x{SIZE}, 1 channel",
              "rows": rows}
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
