"""Write the comparison table of ``docs/results.md`` from the evaluation JSONs and the training runs.

Run it after the commands in ``docs/results.md``::

    python docs/build_results.py

It reads ``docs/results/<row><seed suffix>.json`` (``python -m core.evaluate --json``) and each
run's ``runs/cmp_<row><seed suffix>/history.jsonl`` (kept in ``docs/results/training.json``, so the
tables can be rebuilt without the runs), and replaces the text between the ``results:begin/end``
markers with one table per seed and the verdict against the paper.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the project's core/, when run as a script
from core.files import write_section  # noqa: E402

RUNS = DOCS.parent / "runs"
ROWS = [  # (json / run name, label, levels shown)
    ("unet", "U-Net", ["4"]),
    ("unetpp_nods", "UNet++ without deep supervision", ["4"]),
    ("unetpp_ds", "UNet++ with deep supervision", ["4", "3", "2", "1", "ens"]),
]
SEEDS = {0: "", 1: "_s1"}  # seed -> suffix of its run folders and JSONs (seed 0 is the shipped model's split)
PAPER_IOU_GAIN = 3.9  # UNet++ with deep supervision over U-Net, mean over 4 datasets (Zhou et al. 2018, abstract)


def training_summary(run: str) -> dict[str, Any]:
    """Epochs, minutes (sum of epoch times), best epoch and validation IoU by epoch of ``runs/cmp_<run>``."""
    events = [json.loads(line) for line in (RUNS / f"cmp_{run}" / "history.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    best = max(epochs, key=lambda e: e["score"])
    return {"epochs": len(epochs), "minutes": sum(e["seconds"] for e in epochs) / 60, "best_epoch": best["epoch"],
            "val_iou": [round(e["val"]["iou"], 4) for e in epochs]}


def load_training() -> dict[str, dict[str, Any]]:
    """Training summaries by run name: from ``runs/`` where a run is there, else as saved before."""
    saved = DOCS / "results" / "training.json"
    summary = json.loads(saved.read_text()) if saved.exists() else {}
    for name, _, _ in ROWS:
        for suffix in SEEDS.values():
            if (RUNS / f"cmp_{name}{suffix}" / "history.jsonl").exists():
                summary[name + suffix] = training_summary(name + suffix)
    saved.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def result(run: str) -> dict[str, Any]:
    """``core.evaluate --json`` output of one run."""
    return json.loads((DOCS / "results" / f"{run}.json").read_text())


def table(suffix: str, training: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| model | level | parameters | GFLOPs | training min (epochs, best) | Dice | IoU | "
             "volume Dice mean | volume Dice median | ms / image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, label, levels in ROWS:
        levels_result, t = result(name + suffix)["levels"], training[name + suffix]
        for i, level in enumerate(levels):
            row = levels_result[level]
            trained = f"{t['minutes']:.1f} ({t['epochs']}, {t['best_epoch']})" if i == 0 else "same"
            lines.append(
                f"| {label if i == 0 else ''} | {'L' + level if level != 'ens' else 'ensemble'} | {row['params']:,} | "
                f"{row['flops'] / 1e9:.2f} | {trained} | {row['dice']:.3f} | {row['iou']:.3f} | "
                f"{row['volume_dice_mean']:.3f} | {row['volume_dice_median']:.3f} | {row['ms_per_image']:.1f} |")
    return lines


def iou_by_epoch(suffix: str, training: dict[str, dict[str, Any]]) -> list[str]:
    """One line per model: its validation IoU (L4) after each epoch, to show how much it swings."""
    return [f"- {label}: " + " ".join(f"{v:.2f}" for v in training[name + suffix]["val_iou"])
            for name, label, _ in ROWS]


def gains(suffix: str) -> dict[str, float]:
    """IoU points (L4) of each UNet++ row over U-Net for one seed."""
    iou = {name: result(name + suffix)["levels"]["4"]["iou"] for name, _, _ in ROWS}
    return {name: 100 * (iou[name] - iou["unet"]) for name in ("unetpp_ds", "unetpp_nods")}


def verdict() -> list[str]:
    per_seed = {seed: gains(suffix) for seed, suffix in SEEDS.items()}
    mean = {name: sum(g[name] for g in per_seed.values()) / len(per_seed) for name in ("unetpp_ds", "unetpp_nods")}
    lines = [f"- Per-slice IoU at L4, seed {seed}: UNet++ with deep supervision {g['unetpp_ds']:+.1f} points over "
             f"U-Net, UNet++ without deep supervision {g['unetpp_nods']:+.1f} points." for seed, g in per_seed.items()]
    lines.append(f"- Mean over the {len(per_seed)} seeds: {mean['unetpp_ds']:+.1f} (with deep supervision) and "
                 f"{mean['unetpp_nods']:+.1f} (without); the paper reports +{PAPER_IOU_GAIN} (mean over its four datasets).")
    worst = min(g["unetpp_ds"] for g in per_seed.values())
    if worst >= PAPER_IOU_GAIN:
        holds = "UNet++ with deep supervision beats U-Net by at least the paper's margin on every seed: the claim holds here"
    elif worst > 0:
        holds = "UNet++ with deep supervision beats U-Net on every seed, but not always by the paper's margin"
    else:
        holds = "UNet++ with deep supervision does not beat U-Net on every seed: the claim does not hold here"
    return lines + [f"- {holds}."]


def results_block() -> list[str]:
    training = load_training()
    lines: list[str] = []
    for seed, suffix in SEEDS.items():
        title = f"### Seed {seed}" + (" (the shipped model's split)" if seed == 0 else "")
        lines += [title, "", *table(suffix, training), "", "Validation IoU (L4) after each epoch:", "",
                  *iou_by_epoch(suffix, training), ""]
    return lines + verdict()


CV_SETS = [  # (budget, variants of docs/recipe.md for U-Net, UNet++ without and with deep supervision; None: not run)
    ("15 minutes of one CPU core each (the recipe study's budget; the `combined` recipe)",
     ["unet", "unetpp_nods", "combined"]),
    ("30 minutes of one CPU core each (the default recipe)", ["unet_30min", None, "area_30min"]),
    ("7 wall-clock minutes each, on one H200 shared by 10 runs (the default recipe)",
     ["gpu_unet", "gpu_unetpp_nods", "gpu"]),
]


def spread(values: list[float]) -> str:
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {sd:.3f}"


def deepest_scores(run: dict[str, Any]) -> dict[str, float]:
    """A recipe-study run's final metrics at its deepest head."""
    return run["final"][max((level for level in run["final"] if level != "ens"), key=int)]


def cross_validated_block(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The three networks on the recipe study's 3 patient folds (``runs``: ``docs/recipe/runs.json``), at
    equal time, each against UNet++ with deep supervision fold by fold."""
    lines: list[str] = []
    for budget, variants in CV_SETS:
        run = [v for v in variants if v]
        folds = {v: [runs[f"{v}/fold{k}"] for k in range(3) if f"{v}/fold{k}" in runs] for v in run}
        if any(len(done) < 3 for done in folds.values()):
            lines += [f"- {budget}: not all {3 * len(run)} runs are done yet (`python bench/recipe.py run "
                      f"--variants {' '.join(run)}`).", ""]
            continue
        lines += [f"### {budget[0].upper()}{budget[1:]}", "",
                  "| network | variant | epochs | volume Dice mean | volume Dice median | slice Dice | per fold |",
                  "|---|---|---|---|---|---|---|"]
        dice = {v: [deepest_scores(r)["volume_dice_mean"] for r in done] for v, done in folds.items()}
        epochs = {v: sum(r["epochs"] for r in done) / len(done) for v, done in folds.items()}
        for (_, label, _), variant in zip(ROWS, variants):
            if not variant:
                lines.append(f"| {label} | not run at this budget | | | | | |")
                continue
            deepest = [deepest_scores(r) for r in folds[variant]]
            lines.append(f"| {label} | `{variant}` | {epochs[variant]:.1f} | {spread(dice[variant])} | "
                         f"{spread([m['volume_dice_median'] for m in deepest])} | "
                         f"{spread([m['dice'] for m in deepest])} | "
                         f"{' / '.join(f'{d:.3f}' for d in dice[variant])} |")
        lines.append("")
        reference = variants[-1]
        for (_, label, _), variant in zip(ROWS, variants[:-1]):
            if variant:
                gains = [a - b for a, b in zip(dice[variant], dice[reference])]
                sign = "+" if sum(gains) > 0 else ""
                lines.append(f"- {label} against UNet++ with deep supervision, fold by fold: {sign}{spread(gains)} "
                             f"volume Dice, ahead on {sum(g > 0 for g in gains)} of 3 folds, with "
                             f"{epochs[variant] / epochs[reference]:.1f}x the epochs.")
        lines.append("")
    return lines


def main() -> None:
    doc = DOCS / "results.md"
    block, cv = results_block(), cross_validated_block(json.loads((DOCS / "recipe" / "runs.json").read_text()))
    write_section(doc, "results", "\n".join(block))
    write_section(doc, "cv", "\n".join(cv))
    print("\n".join(block + cv))


if __name__ == "__main__":
    main()
