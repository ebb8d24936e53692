"""Does averaging several models pay? The fold models of recipe variants, alone and averaged, on the folds.

    python bench/fold_ensemble.py --data ../shared/data/lgg_mri/kaggle_3m \
        --variants area_60min area_30min batch_dice_30min unet_30min

Every variant named was trained on the same 3 patient folds (``bench/recipe.py run``), so each fold's
validation patients can be segmented by several models that never saw them. Their deepest heads'
lesion probabilities (horizontal-flip averaged, as the tuned rules use) are averaged per voxel, and each
model and each combination is scored like ``bench/recipe.py tune`` scores one: post-processing rules chosen
per fold on the other folds' patients (nested). Probabilities are cached per fold model in
``runs/fold_ensemble/`` (recomputed when the checkpoint is newer). Writes ``docs/fold_ensemble.json``;
``docs/recipe.md`` quotes it.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's core/, when run as a script
sys.path.insert(0, str(ROOT / "bench"))
from core.files import atomic_write  # noqa: E402
from recipe import (COMPONENT_FRACTIONS, FOLDS, RUNS, THRESHOLDS, finished, fold_model, nested_rules,  # noqa: E402
                    nested_score)

CACHE = ROOT / "runs" / "fold_ensemble"
RESULTS = ROOT / "docs" / "fold_ensemble.json"
Predictions = dict[str, tuple[np.ndarray, np.ndarray]]  # volume -> (lesion probability as uint8, truth)


def fold_predictions(variant: str, fold: int, data: str) -> Predictions:
    """The deepest head's flip-averaged probabilities of one fold model on its validation patients (cached)."""
    checkpoint = RUNS / variant / f"fold{fold}" / "last.pt"
    cache = CACHE / f"{variant}_fold{fold}.npz"
    if cache.exists() and cache.stat().st_mtime >= checkpoint.stat().st_mtime:
        stored = np.load(cache)
        return {key[:-2]: (stored[key], stored[key[:-2] + "|t"]) for key in stored.files if key.endswith("|p")}
    import torch

    from core.evaluation import volume_predictions
    from core.runtime import autocast_dtype

    torch.set_num_threads(1)
    model, meta, val = fold_model(variant, fold, data)
    out = volume_predictions(model, meta["preprocessing"], val, model.levels[-1],
                             autocast_dtype(torch.device("cpu"), "auto"), True)
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    np.savez_compressed(partial, **{f"{v}|p": p for v, (p, _) in out.items()},
                        **{f"{v}|t": t for v, (_, t) in out.items()})
    partial.replace(cache)
    return out


def averaged(members: list[Predictions]) -> Predictions:
    """Per voxel, the mean of the members' probabilities."""
    return {v: (np.round(np.mean([m[v][0].astype(np.float32) for m in members], axis=0)).astype(np.uint8),
                members[0][v][1]) for v in members[0]}


def scored(predictions: Predictions, fold_of: dict[str, int]) -> dict[str, object]:
    """Nested and best mean volume Dice over every rule of ``tune``'s grid (flip fixed on), and per fold."""
    from core.evaluation import dice_of, volume_errors

    grid = [{"threshold": t, "min_component_fraction": c} for t in THRESHOLDS for c in COMPONENT_FRACTIONS]
    rules = {json.dumps(rule): {v: dice_of(counts) for v, counts in volume_errors(predictions, rule).items()}
             for rule in grid}
    chosen = nested_rules(rules, fold_of)
    return {"nested": nested_score(rules, fold_of, chosen),
            "best": max(statistics.mean(d.values()) for d in rules.values()),
            "folds": [statistics.mean(rules[chosen[k]][v] for v, f in fold_of.items() if f == k) for k in range(FOLDS)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--variants", nargs="+", default=["area_60min", "area_30min", "batch_dice_30min", "unet_30min"])
    args = p.parse_args(argv)
    if len(args.variants) < 2:
        raise SystemExit("--variants: name at least two variants to average")
    per_variant: dict[str, Predictions] = {}
    fold_of: dict[str, int] = {}
    for variant in args.variants:
        missing = [k for k in range(FOLDS) if not finished(RUNS / variant / f"fold{k}")]
        if missing:
            raise SystemExit(f"{variant}: fold(s) {missing} not trained to the end; run bench/recipe.py run first")
        per_variant[variant] = {}
        for fold in range(FOLDS):
            predictions = fold_predictions(variant, fold, args.data)
            per_variant[variant] |= predictions
            fold_of |= dict.fromkeys(predictions, fold)
        print(f"{variant}: predicted", flush=True)
    combos = [(v,) for v in args.variants] + list(itertools.combinations(args.variants, 2))
    combos += [tuple(args.variants)] if len(args.variants) > 2 else []
    rows = []
    for combo in combos:
        row = {"members": list(combo), **scored(averaged([per_variant[v] for v in combo]), fold_of)}
        rows.append(row)
        print(f"{' + '.join(combo)}: nested {row['nested']:.3f}", flush=True)
    atomic_write(RESULTS, json.dumps({"patients": len(fold_of), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
