"""Where our training step spends its time: torch.profiler over one step (after two warm-up steps).

    python bench/profile_step.py --width 32 --size 256 --batch 8

Run it with the CLI's allocator settings for the numbers quoted in docs/benchmarks.md:
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776``.
"""
from __future__ import annotations

import argparse

import torch

from worker import ours_step, synthetic_batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rows", type=int, default=12)
    args = p.parse_args()
    torch.manual_seed(0)
    step = ours_step(args.width)
    images, masks = synthetic_batch(args.batch, args.size)
    for _ in range(2):
        step(images, masks)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(images, masks)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
