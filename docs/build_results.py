"""Write the comparison table of ``docs/results.md`` from the evaluation JSONs and the training runs.

Run it after the commands in ``docs/results.md``::

    python docs/build_results.py

It reads ``docs/results/<row>.json`` (``python -m core.evaluate --json``) and each run's
``runs/cmp_<row>/history.jsonl`` (kept in ``docs/results/training.json``, so the table can be
rebuilt without the runs), and replaces the text between the ``results:begin/end`` markers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
RUNS = DOCS.parent / "runs"
ROWS = [  # (json / run name, label, levels shown)
    ("unet", "U-Net", ["4"]),
    ("unetpp_nods", "UNet++ without deep supervision", ["4"]),
    ("unetpp_ds", "UNet++ with deep supervision", ["4", "3", "2", "1", "ens"]),
]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
PAPER_IOU_GAIN = 3.9  # UNet++ with deep supervision over U-Net, mean over 4 datasets (Zhou et al. 2018, abstract)


def training_summary(name: str) -> dict[str, Any]:
    """Epochs, minutes (sum of epoch times) and best epoch of ``runs/cmp_<name>``."""
    events = [json.loads(line) for line in (RUNS / f"cmp_{name}" / "history.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    best = max(epochs, key=lambda e: e["score"])
    return {"epochs": len(epochs), "minutes": sum(e["seconds"] for e in epochs) / 60, "best_epoch": best["epoch"]}


def load_training() -> dict[str, dict[str, Any]]:
    saved = DOCS / "results" / "training.json"
    if all((RUNS / f"cmp_{name}" / "history.jsonl").exists() for name, _, _ in ROWS):
        summary = {name: training_summary(name) for name, _, _ in ROWS}
        saved.write_text(json.dumps(summary, indent=2) + "\n")
        return summary
    return json.loads(saved.read_text())


def table() -> list[str]:
    training = load_training()
    lines = ["| model | level | parameters | GFLOPs | training min (epochs, best) | Dice | IoU | "
             "volume Dice mean | volume Dice median | ms / image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, label, levels in ROWS:
        result = json.loads((DOCS / "results" / f"{name}.json").read_text())
        t = training[name]
        for i, level in enumerate(levels):
            row = result["levels"][level]
            trained = f"{t['minutes']:.1f} ({t['epochs']}, {t['best_epoch']})" if i == 0 else "same"
            lines.append(
                f"| {label if i == 0 else ''} | {'L' + level if level != 'ens' else 'ensemble'} | {row['params']:,} | "
                f"{row['flops'] / 1e9:.2f} | {trained} | {row['dice']:.3f} | {row['iou']:.3f} | "
                f"{row['volume_dice_mean']:.3f} | {row['volume_dice_median']:.3f} | {row['ms_per_image']:.1f} |")
    return lines


def verdict() -> list[str]:
    iou = {name: json.loads((DOCS / "results" / f"{name}.json").read_text())["levels"]["4"]["iou"]
           for name, _, _ in ROWS}
    gain_ds = 100 * (iou["unetpp_ds"] - iou["unet"])
    gain_nods = 100 * (iou["unetpp_nods"] - iou["unet"])
    if gain_ds >= PAPER_IOU_GAIN:
        holds = "UNet++ with deep supervision beats U-Net by at least the paper's margin: the claim holds here"
    elif gain_ds > 0:
        holds = "UNet++ with deep supervision beats U-Net, but by less than the paper's margin"
    else:
        holds = "UNet++ with deep supervision does not beat U-Net: the claim does not hold here"
    return [f"- Per-slice IoU at L4: UNet++ with deep supervision {gain_ds:+.1f} points over U-Net, "
            f"UNet++ without deep supervision {gain_nods:+.1f} points; the paper reports +{PAPER_IOU_GAIN} "
            f"(mean over its four datasets).",
            f"- {holds}."]


def main() -> None:
    doc = DOCS / "results.md"
    text = doc.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    doc.write_text(text[:start] + "\n" + "\n".join(table() + [""] + verdict()) + "\n" + text[end:])
    print("\n".join(table() + verdict()))


if __name__ == "__main__":
    main()
