"""Speed benchmark: our trainer and inference side by side with the seed post, MONAI and smp.

Every row runs in its own process (``bench/worker.py``) so that allocator settings, which only
take effect at process start, and peak memory are per row. All rows of one run share the machine
state; compare the ratios within a run, not absolute times across runs. The load that other
processes put on the CPU during each row is recorded next to it.

    pip install -r bench/requirements.txt
    python bench/run.py                    # everything, about 10 minutes on 2 cores
    python bench/run.py --only train infer --steps 3

Writes ``bench/results.json`` and the tables of ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.files import atomic_write  # noqa: E402
from core.runtime import TUNED_MALLOC_ENV  # noqa: E402

WORKER = Path(__file__).resolve().parent / "worker.py"
UNTUNED = {"UNETPP_NO_MALLOC_TUNING": "1"}
TRAIN_ROWS = [  # (label, impl, allocator tuned?)
    ("ours, as the CLI runs it (tuned malloc)", "ours", True),
    ("ours, default malloc", "ours", False),
    ("seed post style (fp32, numpy metrics)", "seed", False),
    ("seed post style, tuned malloc", "seed", True),
    ("MONAI BasicUNetPlusPlus, as users run it", "monai", False),
    ("MONAI BasicUNetPlusPlus, tuned malloc", "monai", True),
    ("MONAI, bilinear upsampling as ours, tuned malloc", "monai_bilinear", True),
    ("smp UnetPlusPlus resnet34, as users run it", "smp", False),
]


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies summed over all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def run_worker(args: list[str], tuned: bool) -> dict[str, Any]:
    """Run one worker; return its result plus wall time and the CPU share used by other processes."""
    env = {k: v for k, v in os.environ.items() if k not in TUNED_MALLOC_ENV}
    env.update(TUNED_MALLOC_ENV if tuned else UNTUNED)
    busy0, total0 = cpu_busy()
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(WORKER), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    busy1, total1 = cpu_busy()
    tick = os.sysconf("SC_CLK_TCK")
    # CPU time of our finished child, from the kernel's per-child accounting
    usage = os.times()
    result: dict[str, Any] = {"args": args, "allocator": "tuned" if tuned else "default", "wall_s": wall,
                              "loadavg_before": load0}
    result["_child_cpu_s"] = usage.children_user + usage.children_system
    lines = [line for line in out.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        last = (err.strip().splitlines() or ["no output"])[-1]
        result["error"] = "not installed" if "ModuleNotFoundError" in last else last[-300:]
    else:
        result.update(json.loads(lines[-1].removeprefix("BENCH_RESULT ")))
    result["_busy_jiffies"], result["_total_jiffies"], result["_tick"] = busy1 - busy0, total1 - total0, tick
    return result


def add_other_load(rows: list[dict[str, Any]]) -> None:
    """Convert the raw counters to ``other_load_pct``: CPU used by everything but the row's process."""
    previous_child = 0.0
    for row in rows:
        child = row.pop("_child_cpu_s") - previous_child
        previous_child += child
        busy, total, tick = row.pop("_busy_jiffies"), row.pop("_total_jiffies"), row.pop("_tick")
        other = max(0.0, busy / tick - child)
        row["other_load_pct"] = round(100 * other / max(total / tick, 1e-9), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=["train", "epoch", "infer", "upload"],
                   default=["train", "epoch", "infer", "upload"])
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed training steps per row (after 2 warm-up)")
    p.add_argument("--repeats", type=int, default=5, help="timed inference calls per level and batch")
    p.add_argument("--slices", type=int, default=64, help="real LGG slices in the epoch row")
    p.add_argument("--impls", nargs="+", default=["ours", "seed", "monai", "monai_bilinear", "smp"])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "lgg_mri" / "kaggle_3m"))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = p.parse_args()
    shape = ["--width", str(args.width), "--size", str(args.size)]
    rows: list[dict[str, Any]] = []

    def record(section: str, label: str, worker_args: list[str], tuned: bool = True) -> None:
        print(f"[{section}] {label} ...", flush=True)
        row = run_worker(worker_args, tuned) | {"section": section, "label": label}
        rows.append(row)
        print(f"    {row.get('error') or 'done'} ({row['wall_s']:.0f} s)", flush=True)

    if "train" in args.only:
        for label, impl, tuned in TRAIN_ROWS:
            if impl in args.impls:
                record("train", label, ["train", "--impl", impl, "--batch", str(args.batch),
                                        "--steps", str(args.steps), *shape], tuned)
    if "epoch" in args.only:
        if Path(args.data).is_dir():
            record("epoch", "ours, real LGG slices", ["epoch", "--data", args.data, "--slices", str(args.slices),
                                                      "--batch", str(args.batch), *shape])
        else:
            print(f"[epoch] skipped: no LGG data at {args.data}")
    if "infer" in args.only:
        for mode, label in [("eager", "eager fp32"), ("fast", "ours: channels_last + bf16"), ("onnx", "ONNX Runtime fp32")]:
            record("infer", label, ["infer", "--mode", mode, "--repeats", str(args.repeats), *shape])
    if "upload" in args.only:
        record("upload", "256x256 PNG upload at L4, shipped model", ["upload", "--repeats", "10"])
    add_other_load(rows)

    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "command": " ".join(["python bench/run.py", *sys.argv[1:]]), "versions": versions(),
            "width": args.width, "size": args.size, "batch": args.batch, "repeats": args.repeats}
    atomic_write(args.out, json.dumps({"meta": meta, "rows": rows}, indent=2))
    from bench.report import write_report  # noqa: E402 (after the rows, so a report bug loses no data)

    write_report(meta, rows, args.doc)
    print(f"wrote {args.out} and {args.doc}")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ["torch", "monai", "segmentation-models-pytorch", "onnxruntime"]:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


if __name__ == "__main__":
    main()
