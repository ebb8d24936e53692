"""Training runs as separate processes: launch, list, watch, stop.

A run is a folder ``RUN`` (by default under ``runs/``) that ``python -m core.train --out RUN``
fills; launching one here also writes ``RUN/pid`` and ``RUN/train.log`` (the process's output).

Example::

    from pathlib import Path
    from core.runs import describe, launch, stop
    from core.training.config import TrainConfig, cli_fields, default_of, flag_of

    launch(Path("runs/demo"), TrainConfig(data="synthetic", width=8, size=64, epochs=5))
    describe(Path("runs/demo")).status   # "running", then "completed"
    stop(Path("runs/demo"))              # SIGTERM: the trainer saves last.pt and exits
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.paths import PROJECT_ROOT, runs_root
from core.training.config import TrainConfig, cli_fields, default_of, flag_of
from core.training.history import Event, read_history

_children: dict[int, subprocess.Popen] = {}  # processes launched here, polled to reap them


class RunError(RuntimeError):
    """A run that cannot be launched or controlled; the message says why and what to do."""


RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def run_folder(name: str, root: Path | None = None) -> Path:
    """``runs/NAME`` for a run name typed by a user; ``RunError`` for a name that would leave ``runs/``.

    Names are letters, digits, ``.``, ``_`` and ``-`` (no separators, no leading dot), and the folder
    must resolve directly under the root, so a symlink pointing elsewhere is refused too.

    Example:
        >>> run_folder("lgg-1", Path("/srv/runs")).as_posix()
        '/srv/runs/lgg-1'
    """
    root = Path(root or runs_root()).resolve()
    if not RUN_NAME.match(name):
        raise RunError(f"{name!r} is not a usable run name: letters, digits, '.', '_' and '-' only, "
                       "starting with a letter or digit")
    folder = (root / name).resolve()
    if folder.parent != root:
        raise RunError(f"run {name!r} points outside {root} ({folder}); pick another name")
    return folder


def train_args(config: TrainConfig) -> list[str]:
    """The ``python -m core.train`` flags that reproduce ``config`` (``--out`` and ``--resume`` included)."""
    args = []
    for f in cli_fields():
        value, default = getattr(config, f.name), default_of(f)
        if isinstance(value, bool):  # switches appear only when they change the default
            args += [flag_of(f)] if value != default else []
        elif value is not None:
            args += [flag_of(f), *map(str, value)] if isinstance(value, list) else [flag_of(f), str(value)]
    return args


# -- processes ---------------------------------------------------------------------------------
def _process_alive(pid: int) -> bool:
    """True if ``pid`` runs (a finished child of ours is reaped, not counted as a zombie)."""
    if pid in _children:
        if _children[pid].poll() is None:
            return True
        del _children[pid]
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the OS instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill is all we know


def _cmdline(pid: int) -> list[str] | None:
    """The argv of ``pid``; None where unknown (no ``/proc``, or an exec in progress leaves it empty)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0") if raw else None


def _trainer_out(pid: int, argv: list[str]) -> Path | None:
    """The resolved ``--out`` of ``pid`` if its ``argv`` is ``python -m core.train``, else None."""
    if "core.train" not in argv:
        return None
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None
    out = argv[argv.index("--out") + 1] if "--out" in argv[:-1] else TrainConfig.out
    return (cwd / out).resolve()


def _trainer_pids() -> dict[Path, int]:
    """``{run folder: pid}`` of every ``core.train`` process on this machine (Linux; else empty)."""
    found: dict[Path, int] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        argv = _cmdline(int(entry.name)) if entry.name.isdigit() else None
        out = _trainer_out(int(entry.name), argv) if argv else None
        if out is not None and _process_alive(int(entry.name)):
            found[out] = int(entry.name)
    return found


def run_pid(run: Path, trainers: dict[Path, int] | None = None) -> int | None:
    """The pid of the process training ``run`` now, or None.

    ``RUN/pid`` is checked first; a run started from a shell (no pid file) is found among the
    machine's ``core.train`` processes (``trainers``, scanned if not given).
    """
    run = Path(run).resolve()
    try:
        pid = int((run / "pid").read_text())
    except (OSError, ValueError):
        pid = None
    if pid is not None and _process_alive(pid):
        argv = _cmdline(pid)
        if argv is None or _trainer_out(pid, argv) == run:
            return pid
    return (_trainer_pids() if trainers is None else trainers).get(run)


def is_alive(run: Path) -> bool:
    """True while a trainer process works on ``run``."""
    return run_pid(run) is not None


def launch(run: Path, config: TrainConfig) -> int:
    """Start ``python -m core.train`` for ``config`` into ``run`` as its own session; return its pid.

    Output goes to ``RUN/train.log`` (appended when resuming), the pid to ``RUN/pid``, the config
    to ``RUN/config.json`` (so that the run is described before the trainer starts). While other
    trainings run, torch threads are split between them unless ``config.threads`` is set. Raises
    ``RunError`` if a process already trains ``run``, or if ``run`` holds a run and
    ``config.resume`` is false.
    """
    run = Path(run).resolve()
    run.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(**{**config.to_dict(), "out": str(run)})
    others = len(_trainer_pids())
    if config.threads is None and others:  # share the cores: threads that wait on each other crawl
        config.threads = max(1, (os.cpu_count() or 1) // (others + 1))
    with open(run / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two tabs pressing Start at once: one wins
        pid = run_pid(run)
        if pid is not None:
            raise RunError(f"run {run.name!r} is training already (pid {pid}); stop it or pick another name")
        if (run / "last.pt").exists() and not config.resume:
            raise RunError(f"run {run.name!r} exists already; resume it or pick another name")
        if config.resume and not (run / "last.pt").exists():
            raise RunError(f"run {run.name!r} has no last.pt to resume from")
        (run / "config.json").write_text(json.dumps(config.to_dict(), indent=2))  # the trainer rewrites it
        with open(run / "train.log", "a" if config.resume else "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "core.train", *train_args(config)],
                cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
            )
        _children[process.pid] = process
        tmp = run / "pid.tmp"
        tmp.write_text(str(process.pid))
        tmp.replace(run / "pid")
    return process.pid


def stop(run: Path, wait: float = 0.0) -> bool:
    """Ask the trainer of ``run`` to stop (SIGTERM: it ends the step, saves last.pt, exits 0).

    Waits up to ``wait`` seconds for it to exit. Returns False if no process was training ``run``.
    """
    pid = run_pid(run)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _process_alive(pid):
        time.sleep(0.1)
    return True


# -- state from the folder ---------------------------------------------------------------------
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
    trainers = _trainer_pids()
    runs = [describe(p, trainers) for p in root.iterdir() if is_run_folder(p)]
    return sorted(runs, key=lambda r: r.started, reverse=True)


def log_tail(run: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of ``RUN/train.log`` (progress-bar redraws collapsed)."""
    path = Path(run) / "train.log"
    if not path.is_file():
        return ""
    text = path.read_text(errors="replace")[-64_000:]
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines()[-lines:])
