"""Time to quality: validation volume Dice against minutes of this CPU, for two recipes on the same folds.

    python bench/time_to_quality.py            # after bench/recipe.py run (reads docs/recipe/runs.json)

Each run of the recipe study validates after every epoch; its curve is the volume Dice of the
latest validation at each minute of its budget (one core's time). The chart is the mean over
folds, so both recipes are judged on the same patients. It is written between the
``time-to-quality`` markers of ``docs/benchmarks.md`` as a Mermaid line chart and a table with
the minutes each recipe takes to reach 0.70 and 0.80.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe import FOLDS, RESULTS, VARIANTS, budget_of, tuned_path  # noqa: E402
from core.files import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
RECIPES = {"baseline": "previous defaults (seed-post-like)", "combined": "the four levers",
           "area_sampling": "the default recipe (the four levers + area sampling)",
           "coarse": "the four levers + the first half at 64 px (progressive resizing)",
           "area_30min": "the default recipe with a 30-minute budget",
           "area_60min": "the default recipe with a 60-minute budget"}
TARGETS = (0.70, 0.80)


def score_at(curve: list[list[float]], minute: float) -> float | None:
    """The volume Dice of the latest validation at or before ``minute`` (None before the first)."""
    seen = [dice for t, dice in curve if t <= minute + 1e-9]
    return seen[-1] if seen else None


def mean_curve(runs: list[dict], minutes: list[float]) -> list[float | None]:
    """Mean over folds of ``score_at``; None until every fold has validated once."""
    out = []
    for minute in minutes:  # the budget's last minute takes each run's final validation (a few seconds past it)
        scores = [score_at(r["curve"], minute if minute < minutes[-1] else float("inf")) for r in runs]
        out.append(None if None in scores else statistics.mean(scores))
    return out


def first_reaching(curve: list[float | None], minutes: list[float], target: float) -> float | None:
    return next((m for m, v in zip(minutes, curve) if v is not None and v >= target), None)


def postprocessed(variant: str) -> str:
    """The end-of-budget models' volume Dice at the deepest head with the post-processing ``core.predict`` and
    the app apply, the rule chosen on the other folds (``bench/recipe.py tune``'s nested estimate)."""
    tuned = tuned_path(variant)
    if not tuned.exists() or "nested" not in (rules := json.loads(tuned.read_text())):
        return "-"
    return f"{rules['nested'][max(rules['nested'], key=int)]:.3f}"


def chart(curves: dict[str, list[float | None]], minutes: list[float]) -> list[str]:
    """A Mermaid line chart of ``curves`` (recipes of one budget), from the first minute all have validated."""
    first = next(i for i in range(len(minutes)) if all(c[i] is not None for c in curves.values()))
    series = [f'    line "{name}" [{", ".join(f"{v:.3f}" for v in curve[first:])}]' for name, curve in curves.items()]
    return ["```mermaid", "xychart-beta",
            f'    title "Validation volume Dice vs CPU minutes, {len(minutes)}-minute budget (mean of {FOLDS} folds)"',
            f'    x-axis "minutes of one core" [{", ".join(str(int(m)) for m in minutes[first:])}]',
            '    y-axis "volume Dice" 0 --> 1', *series, "```", ""]


def build() -> str:
    kept = json.loads(RESULTS.read_text())
    by_budget: dict[int, dict[str, list[float | None]]] = {}  # budget -> recipe -> mean curve
    rows = []
    for name, label in RECIPES.items():
        runs = [kept[f"{name}/fold{k}"] for k in range(FOLDS) if f"{name}/fold{k}" in kept]
        if len(runs) < FOLDS:
            continue
        budget = int(budget_of(name)[0])
        minutes = [float(m) for m in range(1, budget + 1)]
        curve = by_budget.setdefault(budget, {})[name] = mean_curve(runs, minutes)
        reach = [first_reaching(curve, minutes, t) for t in TARGETS]
        rows.append(f"| {label} (`{name}`: {VARIANTS[name][0]}) | {budget} | "
                    + " | ".join(f"{r:.0f}" if r is not None else f"not within {budget}" for r in reach)
                    + f" | {curve[-1]:.3f} | {postprocessed(name)} |")
    if not by_budget:
        return "Not measured yet: run `python bench/recipe.py run` for the baseline and combined variants."
    charts = sum((chart(curves, [float(m) for m in range(1, budget + 1)]) for budget, curves in sorted(by_budget.items())),
                 [])
    return "\n".join([
        f"Mean over the {FOLDS} folds of validation volume Dice (deepest head) against minutes of one core, "
        "from the recipe study's runs (`docs/recipe.md`); a run's score at a minute is that of its latest "
        "validation. Each run lays its schedule over its own budget, so recipes of one budget share a chart. "
        "Lines in order: " + ", ".join(f"{n} = {RECIPES[n]}" for curves in by_budget.values() for n in curves) + ".",
        "",
        *charts,
        "| recipe | budget (minutes) | minutes to 0.70 | minutes to 0.80 | at the end of the budget | "
        "the same, post-processed |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Post-processed: the final models of the folds with the rule `core.predict` and the Segment page apply "
        "(threshold, small 3D components dropped, flip average), each fold scored with the rule chosen on the other "
        "two folds' patients (`python bench/recipe.py tune --variant <name>`); validation during training is not "
        "post-processed, so the curve and the minutes are not.",
        "",
        f"Rebuild: `python bench/recipe.py run --data <kaggle_3m> --variants {' '.join(RECIPES)}`, then "
        "`python bench/time_to_quality.py`.",
    ])


def main() -> int:
    section = build()
    write_section(DOC, "time-to-quality", section, heading="Time to quality (training recipe)")
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
