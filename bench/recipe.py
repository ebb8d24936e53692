"""The recipe study: every training lever alone and combined, cross-validated over patients at one budget.

    python bench/recipe.py run --data ../shared/data/lgg_mri/kaggle_3m --jobs 2   # trains what is missing
    python bench/recipe.py status                                                 # one line per run
    python bench/recipe.py tune --data ../shared/data/lgg_mri/kaggle_3m           # post-processing rule
    python bench/recipe.py report                                                 # docs/recipe.md

``run`` trains each variant on each fold into ``runs/recipe/<variant>/fold<k>`` (``--resume``
where a run was cut off), ``--jobs`` at a time with one torch thread each. Every run gets the
same budget of CPU time (``--budget-clock cpu``): with one thread that is the wall time of a
quiet core, and it stays fair when other work shares the machine. ``report`` scores each run's final
model (no epoch picked on the validation fold) from the run folders, keeps the numbers in
``docs/recipe/runs.json`` and writes ``docs/recipe.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's core/, when run as a script
from core.files import atomic_write  # noqa: E402
from core.training.history import read_history  # noqa: E402
RUNS = ROOT / "runs" / "recipe"
RESULTS = ROOT / "docs" / "recipe" / "runs.json"
DOC = ROOT / "docs" / "recipe.md"

FOLDS = 3
BUDGET_MINUTES = 15
COMMON = ["--width", "16", "--size", "128", "--batch-size", "8", "--empty-fraction", "0.3",
          "--folds", str(FOLDS), "--budget-minutes", str(BUDGET_MINUTES), "--budget-clock", "cpu", "--threads", "1", "--seed", "0"]
BASELINE = ["--schedule", "plateau", "--intensity", "none", "--augment", "mild", "--ema", "0", "--sampling", "positive"]
LEVERS = {  # name -> (what it changes, flags over the baseline)
    "intensity": ("per-volume percentile intensity", ["--intensity", "volume"]),
    "augment": ("strong per-channel intensity augmentation", ["--augment", "strong"]),
    "schedule": ("warm-up + cosine decay over the budget", ["--schedule", "cosine", "--warmup", "0.05"]),
    "ema": ("EMA of the weights (0.995)", ["--ema", "0.995"]),
}
EXTRA_LEVERS = {  # measured on top of the combination
    "area_sampling": ("combined + slices drawn by lesion area (the defaults since it won on every fold)",
                      ["--sampling", "area"]),
    "distill": ("combined + self-distillation of L1-L3 from L4 (0.5)", ["--distill", "0.5"]),
    "area_30min": ("the default recipe (combined + area sampling) with twice the budget: do more minutes pay?",
                   ["--sampling", "area", "--budget-minutes", "30"]),
    "area_60min": ("the default recipe with four times the budget: do minutes beyond 30 still pay?",
                   ["--sampling", "area", "--budget-minutes", "60"]),
    "area_120min": ("the default recipe with the shipped model's 120 minutes (v6): does the gain go on?",
                    ["--sampling", "area", "--budget-minutes", "120"]),
    "coarse": ("combined + the first half of the budget at 64 px (progressive resizing)", ["--coarse-share", "0.5"]),
    "area_coarse": ("the default recipe (combined + area sampling) + the first half of the budget at 64 px: do the two "
                    "stack?", ["--sampling", "area", "--coarse-share", "0.5"]),
    "lr3e-3": ("combined at a peak learning rate of 3e-3", ["--lr", "3e-3"]),
    "context1": ("the default recipe + the slices above and below as 6 more channels (2.5D, "
                 "`bench/context_slices.py`)", ["--sampling", "area", "--context", "1"]),
    "sgd": ("the default recipe with SGD, Nesterov momentum 0.99, peak lr 1e-2 (nnU-Net's optimiser) instead of "
            "Adam", ["--sampling", "area", "--optimizer", "sgd", "--lr", "1e-2"]),
    "ds_deep": ("the default recipe with deep-supervision weights rising towards the deepest head (0.1 / 0.2 / "
                "0.3 / 0.4 instead of equal)", ["--sampling", "area", "--ds-weights", "0.1", "0.2", "0.3", "0.4"]),
    "batch_dice": ("the default recipe with the Dice term over the whole batch (nnU-Net's), not per slice",
                   ["--sampling", "area", "--batch-dice"]),
    "batch_dice_30min": ("batch_dice at the default recipe's 30 minutes: does the gain hold with more minutes?",
                         ["--sampling", "area", "--budget-minutes", "30", "--batch-dice"]),
    "fill_120min": ("area_120min + a missing sequence on a quarter of the training slices (pre- or post-contrast "
                    "replaced by FLAIR, as the data set fills what a patient lacks; 8 of the 74 patients have such "
                    "copies)",
                    ["--sampling", "area", "--budget-minutes", "120", "--channel-fill", "0.25"]),
    "width32": ("combined at width 32", ["--width", "32"]),
    "width32_120min": ("the default recipe at width 32 for area_120min's 120 minutes: once more epochs stop paying "
                       "(area_120min against area_60min), does width? Stopped after fold 0, which it lost by 0.05 "
                       "with 43 epochs against 120",
                       ["--sampling", "area", "--budget-minutes", "120", "--width", "32"]),
    "size256": ("combined at 256 px", ["--size", "256"]),
    "unet": ("combined, U-Net (the paper's comparison)", ["--arch", "unet"]),
    "unetpp_nods": ("combined, UNet++ without deep supervision", ["--no-deep-supervision"]),
    "unet_30min": ("U-Net with the default recipe at 30 minutes: does UNet++ catch up with more minutes?",
                   ["--sampling", "area", "--budget-minutes", "30", "--arch", "unet"]),
}
GPU = ["--sampling", "area", "--budget-minutes", "7", "--budget-clock", "wall", "--device", "cuda"]
GPU_VARIANTS = {  # run together on one H200 (with the shipped model's run): 10 processes time-sliced on one GPU
    "gpu": ("the default recipe, 7 wall-clock minutes on an H200 shared by 10 runs (about 8 epochs each)", []),
    "gpu_unet": ("as `gpu`, U-Net", ["--arch", "unet"]),
    "gpu_unetpp_nods": ("as `gpu`, UNet++ without deep supervision", ["--no-deep-supervision"]),
}
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("the previous defaults (ImageNet scaling, mild augmentation, plateau, no EMA)", []),
    "combined": ("all four levers", sum((flags for _, flags in LEVERS.values()), [])),
    **{name: (text, flags) for name, (text, flags) in LEVERS.items()},
    **{name: (text, sum((f for _, f in LEVERS.values()), []) + flags) for name, (text, flags) in EXTRA_LEVERS.items()},
    **{name: (text, sum((f for _, f in LEVERS.values()), []) + GPU + flags) for name, (text, flags) in GPU_VARIANTS.items()},
}


def base_of(variant: str) -> str | None:
    """The variant that ``variant`` changes: the longest of the others' flag lists that its own flags start with
    (the single levers are not bases: ``combined`` changes the baseline); where that is the same recipe at a
    shorter budget, the same recipe at the next shorter budget, so each added stretch of minutes is judged alone."""
    flags = VARIANTS[variant][1]
    bases = [v for v, (_, f) in VARIANTS.items()
             if v != variant and v not in LEVERS and flags[:len(f)] == f and len(f) < len(flags)]
    base = max(bases, key=lambda v: len(VARIANTS[v][1]), default=None)
    shorter = [v for v in VARIANTS if recipe_of(v) == recipe_of(variant) and budget_of(v)[0] < budget_of(variant)[0]]
    return max(shorter, key=lambda v: budget_of(v)[0]) if base in shorter else base


def recipe_of(variant: str) -> list[str]:
    """The variant's own flags without its budget's minutes."""
    flags = VARIANTS[variant][1]
    return [f for i, f in enumerate(flags) if "--budget-minutes" not in flags[max(i - 1, 0):i + 1]]


def budget_of(variant: str) -> tuple[float, str]:
    """The variant's budget: minutes, and the clock they count (its own flags override ``COMMON``'s)."""
    flags = COMMON + VARIANTS[variant][1]

    def value(name: str) -> str:  # the last occurrence wins, as in argparse
        return flags[len(flags) - flags[::-1].index(name)]
    return float(value("--budget-minutes")), value("--budget-clock")


def command(variant: str, fold: int, data: str) -> list[str]:
    """The ``core.train`` command of one run (``--resume`` is added when it continues); ``--context``
    runs go through ``bench/context_slices.py``, which takes the same flags."""
    flags = VARIANTS[variant][1]
    program = [str(ROOT / "bench" / "context_slices.py")] if "--context" in flags else ["-m", "core.train"]
    return [sys.executable, *program, "--data", data, "--out", str(RUNS / variant / f"fold{fold}"),
            *COMMON, "--fold", str(fold), *BASELINE, *flags]


def finished(run: Path) -> bool:
    """True when the run's history ends with an ``end`` event that is not a stop."""
    events = read_history(run / "history.jsonl")
    return bool(events) and events[-1]["event"] == "end" and events[-1]["reason"] != "stopped"


def pending(variants: list[str], retrain: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """The (variant, fold) runs to train: neither finished in ``runs/`` nor kept in ``docs/recipe/runs.json``;
    the ``retrain`` variants also where only their summary is kept (``tune`` needs the fold models, which do
    not outlive a machine)."""
    kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    return [(v, k) for v in variants for k in range(FOLDS)
            if (v in retrain or f"{v}/fold{k}" not in kept) and not finished(RUNS / v / f"fold{k}")]


def run_all(data: str, jobs: int, variants: list[str], retrain: tuple[str, ...] = ()) -> None:
    """Train the ``pending`` runs, ``jobs`` at a time; a cut-off run resumes from its ``last.pt``."""
    queue = pending(variants, retrain)
    running: list[tuple[subprocess.Popen, str]] = []
    while queue or running:
        while queue and len(running) < jobs:
            variant, fold = queue.pop(0)
            run = RUNS / variant / f"fold{fold}"
            cmd = command(variant, fold, data) + (["--resume"] if (run / "last.pt").exists() else [])
            run.mkdir(parents=True, exist_ok=True)
            log = open(run / "train.log", "a")  # noqa: SIM115 (closed with the process)
            print(f"{time.strftime('%H:%M:%S')} start {variant} fold {fold}", flush=True)
            running.append((subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                             env={**os.environ, "OMP_NUM_THREADS": "1"}),
                            f"{variant} fold {fold}"))
        time.sleep(5)
        for process, name in list(running):
            if process.poll() is not None:
                print(f"{time.strftime('%H:%M:%S')} end {name}: exit {process.returncode}", flush=True)
                running.remove((process, name))


def summarize(run: Path) -> dict[str, Any]:
    """What the report needs of one finished run: its final model's metrics per level and its curve."""
    epochs = [e for e in read_history(run / "history.jsonl") if e["event"] == "epoch"]
    final = epochs[-1]["val_levels"]
    return {
        "epochs": len(epochs),
        "minutes": epochs[-1].get("trained_seconds", sum(e["seconds"] for e in epochs)) / 60,
        "final": {level: {k: round(v, 4) for k, v in m.items() if isinstance(v, float)} for level, m in final.items()},
        "best_epoch_volume_dice": round(max(e["val"]["volume_dice_mean"] for e in epochs), 4),
        "curve": [[round(e.get("trained_seconds", 0) / 60, 2), round(e["val"]["volume_dice_mean"], 4)] for e in epochs],
    }


def collect() -> dict[str, dict[str, Any]]:
    """Summaries of every finished run, by ``variant/fold<k>``: from ``runs/`` where present, else as kept."""
    kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for variant in VARIANTS:
        for fold in range(FOLDS):
            run = RUNS / variant / f"fold{fold}"
            if finished(run):
                kept[f"{variant}/fold{fold}"] = summarize(run)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(RESULTS, json.dumps(kept, indent=1) + "\n")
    return kept


def spread(values: list[float]) -> str:
    """``mean ± sd`` of the folds' values (the value alone for one fold: it has no spread).

    Example:
        >>> spread([0.7, 0.8]), spread([0.75]), spread([])
        ('0.750 ± 0.071', '0.750', '-')
    """
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "-"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def fold_scores(runs: dict[str, dict[str, Any]], variant: str) -> dict[int, float]:
    """Fold -> the final volume Dice at the deepest head, for the folds ``variant`` has finished."""
    scores = {}
    for k in range(FOLDS):
        if (r := runs.get(f"{variant}/fold{k}")) is not None:
            scores[k] = r["final"][max((level for level in r["final"] if level != "ens"), key=int)]["volume_dice_mean"]
    return scores


def write_report() -> None:
    """Write ``docs/recipe.md`` from the kept run summaries."""
    runs = collect()
    lines = [
        "# The training recipe, lever by lever",
        "",
        f"Each row is one variant trained on each of {FOLDS} folds of the 74 LGG patients (split by patient, "
        f"`--folds {FOLDS} --seed 0`), every run with the same budget of {BUDGET_MINUTES} minutes of one "
        "core's time (unless its row says otherwise), and scored on its fold's validation patients with the model as it is at the end of "
        "the run (no epoch picked on the validation patients). Numbers are the mean ± standard deviation "
        "over folds. Rebuild with `python bench/recipe.py run --data <kaggle_3m>` then "
        "`python bench/recipe.py report`.",
        "",
        "The epochs a budget buys changed between sittings: the first rows (baseline, combined, "
        "area_sampling) ran about 30% fewer epochs per CPU-minute than later ones of the same network, "
        "and from area_120min on the training step is faster (`core.models.blocks.concat`: 1.17 instead "
        "of 1.62 CPU-minutes per epoch of the default recipe on all 74 patients, beside one other "
        "training: epochs 48-51 against 30-46 of `runs/v8/history.jsonl`, the run that resumed on the new "
        "code). Compare the epochs column before reading a small difference.",
        "",
        f"Common settings: `{' '.join(COMMON)}`; baseline: `{' '.join(BASELINE)}`.",
        "",
        "| variant | changes | folds | epochs | volume Dice mean | volume Dice median | slice Dice | "
        "L1 / L2 / L3 as % of L4 (volume Dice) | best epoch's volume Dice |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, (text, flags) in VARIANTS.items():
        done = [runs[f"{variant}/fold{k}"] for k in range(FOLDS) if f"{variant}/fold{k}" in runs]
        if not done:
            continue
        deepest = [str(max(int(level) for level in r["final"] if level != "ens")) for r in done]
        l4 = [r["final"][d] for r, d in zip(done, deepest)]
        shares = []
        for level in ("1", "2", "3"):
            ratios = [r["final"][level]["volume_dice_mean"] / max(m["volume_dice_mean"], 1e-9)
                      for r, m in zip(done, l4) if level in r["final"]]
            shares.append(f"{100 * statistics.mean(ratios):.0f}%" if ratios else "-")
        lines.append(
            f"| {variant} | {text}{': `' + ' '.join(flags) + '`' if flags else ''} | {len(done)} | "
            f"{statistics.mean(r['epochs'] for r in done):.1f} | "
            f"{spread([m['volume_dice_mean'] for m in l4])} | {spread([m['volume_dice_median'] for m in l4])} | "
            f"{spread([m['dice'] for m in l4])} | {' / '.join(shares)} | "
            f"{spread([r['best_epoch_volume_dice'] for r in done])} |")
    lines += ["", "Per fold, the final volume Dice (mean over the fold's patients) at the deepest head, and the "
              "difference to the variant it changes, on the same folds (mean ± sd over the folds both have, and "
              "their count): folds differ more from each other than most levers do, so a lever is judged by this "
              "paired difference.", "",
              "| variant | " + " | ".join(f"fold {k}" for k in range(FOLDS)) + " | changes | paired difference |",
              "|---|" + "---|" * (FOLDS + 2)]
    for variant in VARIANTS:
        scores, base = fold_scores(runs, variant), base_of(variant)
        if not scores:
            continue
        reference = fold_scores(runs, base) if base else {}
        paired = [scores[k] - reference[k] for k in scores if k in reference]
        lines.append(f"| {variant} | " + " | ".join(f"{scores[k]:.3f}" if k in scores else "-" for k in range(FOLDS))
                     + f" | {base or '-'} | {f'{spread(paired)} ({len(paired)})' if paired else '-'} |")
    for variant in VARIANTS:
        if not tuned_path(variant).exists():
            continue
        tuned = json.loads(tuned_path(variant).read_text())
        scored = [json.loads(rule) for rule in tuned["table"][max(tuned["table"], key=int)]]
        thresholds, fractions = (sorted({r[key] for r in scored}) for key in ("threshold", "min_component_fraction"))
        lines += ["", f"## Post-processing of `{variant}`, chosen on the folds", "",
                  f"Each fold's final `{tuned['variant']}` model segments its own validation patients "
                  f"({tuned['patients']} patients in all, each scored once); every rule (threshold "
                  f"{', '.join(map(str, thresholds))}; keep 3D components of at least "
                  f"{', '.join(map(str, fractions))} of the largest; with and without a horizontal-flip "
                  "average) is scored by mean volume Dice over them. `python bench/recipe.py tune` rebuilds it. "
                  "The flip is one setting per checkpoint, the deepest head's best; each head's best threshold and "
                  "component share under it are stored in the shipped checkpoint and are the defaults of "
                  "`core.predict` and the Segment page. The nested column scores each fold with the rules chosen "
                  "on the other folds alone, the flip included.", "",
                  "| level | threshold 0.5, all components, no flip | best rule | its volume Dice | "
                  "rule chosen on the other folds (nested) |",
                  "|---|---|---|---|---|"]
        for level in sorted(tuned["best"], key=int):
            best = tuned["best"][level]
            rule = (f"threshold {best['threshold']}, components ≥ {best['min_component_fraction']} of the largest"
                    f"{', flip' if best['hflip'] else ''}")
            nested = f"{tuned['nested'][level]:.3f}" if "nested" in tuned else "-"
            lines.append(f"| L{level} | {tuned['plain'][level]:.3f} | {rule} | {best['volume_dice_mean']:.3f} | "
                         f"{nested} |")
        lines += error_lines(tuned.get("errors", {}))
    lines += not_trained() + beyond_mri()
    atomic_write(DOC, "\n".join(lines) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)} from {len(runs)} runs")


def error_lines(errors: dict[str, dict[str, int]], worst: int = 5) -> list[str]:
    """Where the deepest head loses under its best rule: missed against false voxels, by lesion size, and the
    worst patients (``tune``'s ``errors``: voxel counts at the model's input size)."""
    if not errors:
        return []
    from core.evaluation import dice_of

    def share(rows: list[dict[str, int]], key: str) -> float:
        return sum(r[key] for r in rows) / max(sum(r["lesion"] for r in rows), 1)
    rows = sorted(errors.items(), key=lambda item: item[1]["lesion"])
    everyone = [c for _, c in rows]
    wrong = sum(c["false_positive"] for c in everyone)
    lines = ["", "Where the deepest head still loses under that rule (voxels counted at the model's input size): "
             f"it misses {100 * share(everyone, 'false_negative'):.0f}% of the {sum(c['lesion'] for c in everyone):,} "
             f"lesion voxels and marks false ones amounting to {100 * share(everyone, 'false_positive'):.0f}% of "
             f"them, {100 * sum(c['false_positive_on_empty'] for c in everyone) / max(wrong, 1):.0f}% of those on "
             "slices without lesion.", "",
             "| patients by lesion size (thirds) | lesion voxels | volume Dice mean | missed | false, per lesion voxel |",
             "|---|---|---|---|---|"]
    thirds = [rows[k * len(rows) // 3:(k + 1) * len(rows) // 3] for k in range(3)]
    for name, third in zip(("smallest", "middle", "largest"), thirds):
        counts = [c for _, c in third]
        lines.append(f"| {name} ({len(third)}) | {third[0][1]['lesion']:,}–{third[-1][1]['lesion']:,} | "
                     f"{statistics.mean(dice_of(c) for c in counts):.3f} | {100 * share(counts, 'false_negative'):.0f}% | "
                     f"{share(counts, 'false_positive'):.2f} |")
    lines += ["", f"The {worst} worst patients:", "",
              "| patient | volume Dice | lesion voxels | missed | false voxels (on lesion-free slices) |",
              "|---|---|---|---|---|"]
    for volume, c in sorted(errors.items(), key=lambda item: dice_of(item[1]))[:worst]:
        lines.append(f"| {volume} | {dice_of(c):.3f} | {c['lesion']:,} | {100 * c['false_negative'] / max(c['lesion'], 1):.0f}% | "
                     f"{c['false_positive']:,} ({c['false_positive_on_empty']:,}) |")
    return lines


def not_trained() -> list[str]:
    """Levers measured without training, and why: ``bench/crop_ceiling.py``'s resolution ceilings."""
    results = ROOT / "docs" / "crop_ceiling.json"
    if not results.exists():
        return []
    c = json.loads(results.read_text())
    return ["", "## Measured without training", "",
            f"- **Crop to the head before resizing** (`python bench/crop_ceiling.py --data <kaggle_3m>`): at "
            f"{c['size']} px the masks' own round trip (shrunk, enlarged back) already scores a mean volume Dice "
            f"of {c['full']:.4f} over the {c['patients']} patients, and {c['crop']:.4f} after cropping each "
            f"patient to its head's bounding box, which spans {100 * c['side_share']:.0f}% of the frame's side "
            f"(median {100 * c['median_side_share']:.0f}%). Resolution costs the model at most "
            f"{1 - c['full']:.3f}, and the crop could win back {c['crop'] - c['full']:.3f} of it, so it was not "
            "trained. The same ceiling bounds what 256 px can gain from resolution alone."] + ensembles()


def ensembles() -> list[str]:
    """``bench/fold_ensemble.py``'s averages of several variants' fold models, where it was run."""
    results = ROOT / "docs" / "fold_ensemble.json"
    if not results.exists():
        return []
    rows = json.loads(results.read_text())["rows"]
    singles = [r for r in rows if len(r["members"]) == 1]
    single = max(singles, key=lambda r: r["nested"])
    pair = max((r for r in rows if len(r["members"]) == 2), key=lambda r: r["nested"])
    scores = "; ".join(f"{' + '.join(r['members'])} {r['nested']:.3f}" for r in rows)
    return [f"- **Averaging several models** (`python bench/fold_ensemble.py --data <kaggle_3m>`): the deepest heads "
            f"of {len(singles)} variants' fold models, averaged per voxel on their folds' patients and post-processed "
            f"with rules chosen on the other folds (nested mean volume Dice): {scores}. The best pair gains "
            f"{pair['nested'] - single['nested']:+.3f} over its best member ({single['members'][0]}) for twice the "
            "inference time, so the shipped model stays one network and the minutes go into training it."]


def beyond_mri() -> list[str]:
    """The defaults on a task that is not MRI: ``bench/em_check.py``'s results, where they exist."""
    results = ROOT / "docs" / "em_check.json"
    if not results.exists():
        return []
    rows = json.loads(results.read_text())
    lines = ["", "## Beyond MRI: the defaults on EM membranes", "",
             "`python bench/em_check.py --data ../shared/data/em_isbi2012` trains `python -m core.train --data "
             "<24 slices>` with no other flag (and with the variants below), predicts the 6 held-out slices "
             "(a contiguous block of the stack) with `core.predict` and scores them at their own 512 px. The "
             "membranes are the hard class (22% of pixels, a few pixels thick).", "",
             "| variant | flags | input size | minutes (1 thread, shared CPU) | interior Dice | membrane Dice |",
             "|---|---|---|---|---|---|"]
    for r in rows.values():
        lines.append(f"| {r['what']} | `{' '.join(r['flags']) or '(none)'}` | {r['size']} | {r['train_minutes']} | "
                     f"{r['interior_dice']:.3f} | {r['membrane_dice']:.3f} |")
    return lines


THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # 0.1 and 0.2 since area_30min's best was the old grid's edge, 0.3
COMPONENT_FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
def tuned_path(variant: str) -> Path:
    """Where ``tune`` writes the rules scored for ``variant``."""
    return ROOT / "docs" / "recipe" / f"postprocess_{variant}.json"


def fold_model(variant: str, fold: int, data: str) -> tuple[Any, dict[str, Any], Any]:
    """One fold's final model of ``variant``, its metadata, and its validation patients' slices as it was trained
    to see them (its input size and intensity policy)."""
    from core.checkpoint import load_checkpoint
    from core.data import load_source

    model, meta = load_checkpoint(RUNS / variant / f"fold{fold}" / "last.pt")
    pre = meta["preprocessing"]
    return model, meta, load_source(data, pre["input_size"], 3, 1, meta["split"]["val"], pre.get("intensity", "none"))


def tune(variant: str, data: str) -> dict[str, Any]:
    """Score every post-processing rule on each fold's validation patients with that fold's final model.

    Every patient is scored once (by the model that did not train on it); the rule with the best
    mean volume Dice over all of them, per level, is the one to store in checkpoints.
    """
    import torch

    from core.evaluation import dice_of, volume_errors, volume_predictions
    from core.runtime import autocast_dtype

    torch.set_num_threads(1)
    scores: dict[str, dict[str, dict[str, float]]] = {}  # level -> rule key -> volume -> Dice
    errors: dict[str, dict[str, dict[str, int]]] = {}  # the deepest level's rule key -> volume -> voxel counts
    fold_of: dict[str, int] = {}  # volume -> the fold that holds it out
    for fold in range(FOLDS):
        model, meta, val = fold_model(variant, fold, data)
        fold_of |= {volume: fold for volume in meta["split"]["val"]}
        pre = meta["preprocessing"]
        for level in model.levels:
            for hflip in (False, True):
                predictions = volume_predictions(model, pre, val, level, autocast_dtype(torch.device("cpu"), "auto"),
                                                 hflip)
                for threshold in THRESHOLDS:
                    for fraction in COMPONENT_FRACTIONS:
                        rule = {"threshold": threshold, "min_component_fraction": fraction, "hflip": hflip}
                        counts = volume_errors(predictions, rule)
                        scores.setdefault(str(level), {}).setdefault(json.dumps(rule), {}).update(
                            {volume: dice_of(c) for volume, c in counts.items()})
                        if level == max(model.levels):
                            errors.setdefault(json.dumps(rule), {}).update(counts)
        print(f"{variant} fold {fold}: scored", flush=True)
    table = {level: {rule: statistics.mean(d.values()) for rule, d in rules.items()} for level, rules in scores.items()}
    deepest = max(table, key=int)
    best = max(table[deepest], key=table[deepest].get)
    flip = json.loads(best)["hflip"]  # one setting per checkpoint (a pruned head is a cut of the same forward pass)
    under_flip = {level: {r: m for r, m in rules.items() if json.loads(r)["hflip"] == flip}
                  for level, rules in table.items()}
    flip_of = {fold: json.loads(rule)["hflip"] for fold, rule in nested_rules(scores[deepest], fold_of).items()}
    result = {"variant": variant, "patients": len(fold_of),
              "plain": {level: rules[json.dumps({"threshold": 0.5, "min_component_fraction": 0.0, "hflip": False})]
                        for level, rules in table.items()},
              "best": {level: json.loads(max(rules, key=rules.get)) | {"volume_dice_mean": max(rules.values())}
                       for level, rules in under_flip.items()},
              "nested": {level: nested_score(rules, fold_of, nested_rules(rules, fold_of, flip_of))
                         for level, rules in scores.items()},
              "table": table, "errors": errors[best]}  # the deepest head's losses under its best rule
    atomic_write(tuned_path(variant), json.dumps(result, indent=1) + "\n")
    return result


def nested_rules(rules: dict[str, dict[str, float]], fold_of: dict[str, int],
                 flip_of: dict[int, bool] | None = None) -> dict[int, str]:
    """Per fold, the rule with the best mean volume Dice over the other folds' patients alone; with ``flip_of``,
    only among the rules with that fold's flip setting (the one its deepest head chose on the same patients).

    Example:
        >>> rules = {'{"hflip": false}': {"p1": 0.9, "p2": 0.1}, '{"hflip": true}': {"p1": 0.2, "p2": 0.8}}
        >>> nested_rules(rules, {"p1": 0, "p2": 1}), nested_rules(rules, {"p1": 0, "p2": 1}, {0: True, 1: True})
        ({0: '{"hflip": true}', 1: '{"hflip": false}'}, {0: '{"hflip": true}', 1: '{"hflip": true}'})
    """
    chosen = {}
    for fold in sorted(set(fold_of.values())):
        others = [v for v, k in fold_of.items() if k != fold]
        allowed = [r for r in rules if flip_of is None or json.loads(r)["hflip"] == flip_of[fold]]
        chosen[fold] = max(allowed, key=lambda r: statistics.mean(rules[r][v] for v in others))
    return chosen


def nested_score(rules: dict[str, dict[str, float]], fold_of: dict[str, int], chosen: dict[int, str]) -> float:
    """Mean volume Dice when each fold's patients get the rule ``chosen`` for that fold (``nested_rules``):
    an estimate of the post-processed quality that no choice has seen (the best rule's own mean has)."""
    return statistics.mean(rules[chosen[fold]][volume] for volume, fold in fold_of.items())


def cross_validated(variant: str) -> dict[str, Any]:
    """The recipe's cross-validated metrics in the checkpoint's ``metrics`` shape: per level, the mean
    over folds of each fold's final model on its own validation patients (every patient scored once)."""
    runs = collect()
    folds = [runs[f"{variant}/fold{k}"]["final"] for k in range(FOLDS) if f"{variant}/fold{k}" in runs]
    if len(folds) < FOLDS:
        raise SystemExit(f"{variant}: {len(folds)} of {FOLDS} folds finished; run the study first")
    levels = {level: {key: statistics.mean(f[level][key] for f in folds) for key in folds[0][level]
                      if all(key in f[level] for f in folds)} for level in folds[0]}
    deepest = str(max(int(level) for level in levels if level != "ens"))
    minutes, clock = budget_of(variant)
    return levels[deepest] | {"levels": levels, "source": "cross-validation", "variant": variant, "folds": FOLDS,
                              "budget_minutes": minutes, "budget_clock": clock}


def ship(checkpoint: Path, out: Path, variant: str, data: str) -> dict[str, Any]:
    """Write ``checkpoint`` as the shipped model: weights and metadata only, with the post-processing rules
    ``tune`` chose (the deepest head's flip, each head's threshold and components), its recipe's cross-validated
    metrics as ``metrics``, and its fit on the patients it was trained on (``training_fit``, what
    ``core.evaluate --split train`` gives)."""
    from core.checkpoint import atomic_save, model_from, read_checkpoint, without_training_state
    from core.data import load_source
    from core.evaluation import evaluate_model
    from core.postprocess import PER_LEVEL

    if not tuned_path(variant).exists():
        raise SystemExit(f"no {tuned_path(variant)}: run tune --variant {variant} first")
    tuned = json.loads(tuned_path(variant).read_text())
    data_ = read_checkpoint(checkpoint)
    shipped = without_training_state(data_)
    deepest = str(max(int(level) for level in tuned["best"]))
    shipped["postprocessing"] = {k: v for k, v in tuned["best"][deepest].items() if k != "volume_dice_mean"} | {
        "levels": {level: {k: rule[k] for k in PER_LEVEL}  # each pruned head's own threshold and components
                   for level, rule in tuned["best"].items() if level != deepest}}
    # the nested estimate (each fold scored with the rule chosen on the others) where tune made one
    postprocessed = tuned.get("nested", {}).get(deepest, tuned["best"][deepest]["volume_dice_mean"])
    shipped["metrics"] = cross_validated(variant) | {"postprocessed_volume_dice_mean": postprocessed}
    for level, estimate in tuned.get("nested", {}).items():  # each head under its own rule, chosen on other folds
        shipped["metrics"]["levels"][level]["postprocessed_volume_dice_mean"] = estimate
    model, meta = model_from(shipped, checkpoint)
    pre = meta["preprocessing"]
    slices = load_source(data, pre["input_size"], model.in_channels, model.num_classes, meta["split"]["train"],
                         pre.get("intensity", "none"))
    fit = evaluate_model(model, meta, slices, [model.levels[-1]], timing_repeats=1)
    shipped["training_fit"] = {level: {k: v for k, v in row.items() if k != "volume_dice"}
                               for level, row in fit["levels"].items()}
    atomic_save(shipped, out)
    return {"postprocessing": shipped["postprocessing"], "metrics": shipped["metrics"],
            "training_fit_L4": shipped["training_fit"][deepest]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("run", help="train the missing runs")
    r.add_argument("--data", required=True)
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    r.add_argument("--retrain", nargs="+", default=[], choices=list(VARIANTS),
                   help="train these variants' folds again where only their summaries are kept (to tune them)")
    t = sub.add_parser("tune", help="choose the post-processing rule on the folds of one variant")
    t.add_argument("--data", required=True)
    t.add_argument("--variant", default="combined", choices=list(VARIANTS))
    w = sub.add_parser("ship", help="write a trained checkpoint as the shipped model, with the tuned rule")
    w.add_argument("checkpoint", type=Path)
    w.add_argument("--out", type=Path, default=ROOT / "checkpoints" / "unetpp_lgg.pt")
    w.add_argument("--variant", default="combined", choices=list(VARIANTS))
    w.add_argument("--data", required=True)
    sub.add_parser("status", help="one line per run")
    sub.add_parser("report", help="score the runs and write docs/recipe.md")
    args = p.parse_args(argv)
    if args.action == "run":
        run_all(args.data, args.jobs, args.variants, tuple(args.retrain))
    elif args.action == "tune":
        best = tune(args.variant, args.data)["best"]
        print(json.dumps(best, indent=1))
    elif args.action == "ship":
        print(json.dumps(ship(args.checkpoint, args.out, args.variant, args.data), indent=1, default=str))
    elif args.action == "status":
        kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        for variant in VARIANTS:
            for fold in range(FOLDS):
                run = RUNS / variant / f"fold{fold}"
                state = ("done" if finished(run) else "started" if run.exists()
                         else "kept" if f"{variant}/fold{fold}" in kept else "-")
                print(f"{variant:>15} fold {fold}: {state}")
    else:
        write_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
