"""What a run folder says about its run: history, config, progress and ETA, and the runs listed."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from core.paths import runs_root
from core.run_process import run_pid, trainer_pids
from core.training.config import TrainConfig
from core.training.history import Event, read_history


def read_run_history(run: Path) -> list[Event]:
    """Every event ``RUN/history.jsonl`` holds so far."""
    return read_history(Path(run) / "history.jsonl")


def run_config(run: Path, events: list[Event] | None = None) -> TrainConfig | None:
    """The run's ``TrainConfig``: from its last start/resume event, else ``RUN/config.json``, else None."""
    events = read_run_history(run) if events is None else events
    for event in reversed(events):
        if event.get("event") in ("start", "resume"):
            return TrainConfig.from_dict(event["config"])
    try:
        return TrainConfig.from_dict(json.loads((Path(run) / "config.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Progress:
    """Where a run stands: steps done of this session's total, time spent and left."""

    epoch: int  # epoch in progress (1-based), or the last one finished
    epochs: int
    step: int
    steps: int  # per epoch
    fraction: float  # 0..1 of the steps this (resumed) session has to do
    elapsed: float  # seconds since the session started
    eta: float | None  # seconds left, None before the first step


def progress(events: list[Event], now: float | None = None) -> Progress | None:
    """The progress of the latest start/resume session in ``events``; None before it starts.

    ``now`` (default: the time of the last event once the run ended, else the clock) sets the
    elapsed time.
    """
    starts = [i for i, e in enumerate(events) if e.get("event") in ("start", "resume")]
    if not starts:
        return None
    start, session = events[starts[-1]], events[starts[-1]:]
    first, epochs, spe = start["epoch"], start["epochs"], start["steps_per_epoch"]
    ended = session[-1].get("event") == "end"
    now = session[-1]["time"] if ended else (time.time() if now is None else now)
    elapsed = max(0.0, now - start["time"])
    steps = [e for e in session if e.get("event") == "step"]
    epoch_done = max([e["epoch"] for e in session if e.get("event") == "epoch"], default=first)
    total = max(1, (epochs - first) * spe)
    if start.get("budget_minutes"):  # steps are not known in advance: the fraction is of the time budget
        total = max(1, round((start["budget_minutes"] * 60 - start.get("trained_seconds", 0.0))
                             / max(elapsed, 1e-9) * max(len(steps), 1)))
    if not steps:
        return Progress(max(first, 1), epochs, 0, spe, 1.0 if ended else 0.0, elapsed, None)
    last = steps[-1]
    done = (last["epoch"] - 1 - first) * spe + last["step"]
    if ended:
        return Progress(epoch_done, epochs, last["step"], spe, done / total, elapsed, 0.0)
    eta = elapsed / done * max(0, total - done)
    if start.get("budget_minutes"):  # the schedule ends when the budget is spent, whatever the epochs
        eta = max(0.0, start["budget_minutes"] * 60 - start.get("trained_seconds", 0.0) - elapsed)
    limit = (start.get("config") or {}).get("max_minutes")
    if limit:  # the run stops after the epoch that passes its time limit
        eta = min(eta, max(0.0, limit * 60 - elapsed))
    return Progress(last["epoch"], epochs, last["step"], spe, min(1.0, done / total), elapsed, eta)


@dataclass(frozen=True)
class RunInfo:
    """A run folder summarised for listing.

    ``status`` is ``"running"``, an end reason (``"completed"``, ``"stopped"``,
    ``"early_stopping"``, ``"time_limit"``), or ``"failed"`` (no process and no end event: see
    ``RUN/train.log``).
    """

    path: Path
    status: str
    pid: int | None
    config: TrainConfig | None
    epoch: int  # epochs finished
    epochs: int | None
    best_score: float | None
    best_epoch: int | None
    started: float  # unix time
    updated: float

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def alive(self) -> bool:
        return self.pid is not None

    @property
    def best(self) -> Path | None:
        """``RUN/best.pt`` if the run has one."""
        path = self.path / "best.pt"
        return path if path.is_file() else None

    @property
    def last(self) -> Path | None:
        """``RUN/last.pt`` if the run has one."""
        path = self.path / "last.pt"
        return path if path.is_file() else None


def describe(run: Path, trainers: dict[Path, int] | None = None, events: list[Event] | None = None) -> RunInfo:
    """Status, config, epochs and best score of ``run`` from its folder and process."""
    run = Path(run).resolve()
    events = read_run_history(run) if events is None else events
    pid = run_pid(run, trainers)
    epoch_events = [e for e in events if e.get("event") == "epoch"]
    best = [e for e in epoch_events if e.get("best")]
    end = events[-1] if events and events[-1].get("event") == "end" else None
    status = "running" if pid is not None else end["reason"] if end else "failed"
    starts = [e for e in events if e.get("event") in ("start", "resume")]
    files = [p for p in (run / "history.jsonl", run / "pid", run / "config.json", run / "train.log") if p.exists()]
    updated = max((p.stat().st_mtime for p in files), default=run.stat().st_mtime)
    started = starts[0]["time"] if starts else min((p.stat().st_mtime for p in files), default=updated)
    return RunInfo(
        path=run, status=status, pid=pid, config=run_config(run, events),
        epoch=epoch_events[-1]["epoch"] if epoch_events else 0,
        epochs=starts[-1]["epochs"] if starts and not starts[-1].get("budget_minutes") else None,
        best_score=best[-1]["score"] if best else None,
        best_epoch=best[-1]["epoch"] if best else None,
        started=started, updated=updated,
    )


def is_run_folder(path: Path) -> bool:
    """True for a folder a trainer or ``launch`` has written to."""
    return path.is_dir() and any((path / f).exists() for f in ("pid", "history.jsonl", "config.json"))


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run under ``root`` (default ``runs_root()``), the most recently started first."""
    root = runs_root() if root is None else Path(root)
    if not root.is_dir():
        return []
    trainers = trainer_pids()
    runs = [describe(p, trainers) for p in root.iterdir() if is_run_folder(p)]
    return sorted(runs, key=lambda r: r.started, reverse=True)


def log_tail(run: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of ``RUN/train.log`` (progress-bar redraws collapsed)."""
    path = Path(run) / "train.log"
    if not path.is_file():
        return ""
    text = path.read_text(errors="replace")[-64_000:]
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines()[-lines:])
