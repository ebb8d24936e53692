"""The training step with the models' own concatenation (``core.models.blocks.concat``) against plain ``torch.cat``.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 python bench/concat_grad.py

It takes about 5 minutes and writes docs/concat_grad.json and its section of docs/benchmarks.md; the
allocator settings are the ones ``python -m core.train`` runs with.

Both steps are ``core.training.training_step`` (channels_last, bf16 autocast where the CPU has it, the
deep-supervision loss), with the same weights and the same batch; they alternate step by step in one
process, so load from other processes slows both alike, and the ratio of their medians is the figure.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's core/, when run as a script
from core.checkpoint import default_normalization  # noqa: E402
from core.files import atomic_write, write_section  # noqa: E402
from core.losses import BCEDiceLoss, DeepSupervisionLoss  # noqa: E402
from core.models import build_model  # noqa: E402
from core.runtime import autocast_dtype, memory_format  # noqa: E402
from core.training.trainer import training_step  # noqa: E402

OUT = ROOT / "docs" / "concat_grad.json"
DOC = ROOT / "docs" / "benchmarks.md"
CASES = [  # (label, model config, input size): the default recipe's size and the seed post's
    ("UNet++, width 16, 128 px", {"arch": "unetpp", "base_width": 16}, 128),
    ("UNet++, width 32, 256 px", {"arch": "unetpp", "base_width": 32}, 256),
    ("U-Net, width 16, 128 px", {"arch": "unet", "base_width": 16}, 128),
]


@contextmanager
def plain_cat(arch: str) -> Iterator[None]:
    """Within the block, the architecture's module concatenates with ``torch.cat`` itself."""
    module = importlib.import_module({"unetpp": "core.models.unetpp", "unet": "core.models.unet"}[arch])
    own = module.concat
    module.concat = lambda tensors: torch.cat(tensors, 1)
    try:
        yield
    finally:
        module.concat = own


def measure(config: dict[str, Any], size: int, batch: int, steps: int) -> dict[str, float]:
    """Median seconds per step for both concatenations, alternating, after two warm-up steps each."""
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    masks = (torch.rand(batch, 1, size, size, generator=generator) > 0.9).float()
    dtype = autocast_dtype(device)

    def make_step() -> Any:
        torch.manual_seed(0)
        model = build_model(config).to(memory_format=memory_format(device)).train()
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        scaler = torch.amp.GradScaler(enabled=False)
        criterion = DeepSupervisionLoss(BCEDiceLoss(0.5))
        norm = default_normalization(3)
        return lambda: training_step(model, criterion, optimizer, scaler, images, masks, norm, dtype)
    own, plain = make_step(), make_step()
    times: dict[str, list[float]] = {"concat": [], "torch.cat": []}
    for i in range(steps + 2):
        for name, step in (("concat", own), ("torch.cat", plain)):
            with plain_cat(config["arch"]) if name == "torch.cat" else nullcontext():
                start = time.perf_counter()
                step()
                if i >= 2:
                    times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"concat_s": medians["concat"], "torch_cat_s": medians["torch.cat"],
            "speedup": medians["torch.cat"] / medians["concat"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per concatenation and case")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the recipe study trains with 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    for label, config, size in CASES:
        row = {"case": label, "size": size, **measure(config, size, args.batch, args.steps)}
        rows.append(row)
        print(f"{label}: {row['torch_cat_s']:.3f} s -> {row['concat_s']:.3f} s per step ({row['speedup']:.2f}x)")
    result = {"batch": args.batch, "threads": args.threads, "steps": args.steps, "cpus": os.cpu_count(),
              "torch": torch.__version__, "load_average_before": load_before, "rows": rows}
    atomic_write(OUT, json.dumps(result, indent=1) + "\n")
    write_section(DOC, "concat-grad", section(result), heading="The concatenation's backward (training step)")


def section(result: dict[str, Any]) -> str:
    """The Markdown section of docs/benchmarks.md."""
    lines = [f"Generated by `python bench/concat_grad.py`: median of {result['steps']} alternating training steps "
             f"each, batch {result['batch']}, {result['threads']} torch thread(s) on {result['cpus']} CPUs (load "
             f"average {result['load_average_before']:.1f} before it started), torch {result['torch']}.", "",
             "| network | `torch.cat` (s / step) | `core.models.blocks.concat` (s / step) | speed-up |",
             "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['torch_cat_s']:.3f} | {r['concat_s']:.3f} | {r['speedup']:.2f}x |"
              for r in result["rows"]]
    return "\n".join(lines + [
        "", "`torch.cat`'s backward hands each input a channel slice of the gradient; in channels_last that "
        "slice is strided, and the CPU kernels that read it (the gradient sums of nodes that feed several "
        "concatenations, bilinear up-sampling's backward) take slow paths. `concat` gives each input a dense "
        "copy instead. The forward pass and the gradients are the same (tests/test_models.py), and inference "
        "and export use `torch.cat` itself."])


if __name__ == "__main__":
    main()
