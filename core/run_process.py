"""Training runs as processes: the ``core.train`` argv of a config, launch, stop, and which
process trains which run folder (``RUN/pid``, ``/proc``, a ``flock`` against double starts)."""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.files import atomic_write
from core.paths import PROJECT_ROOT, runs_root
from core.training.config import TrainConfig, cli_fields, default_of, flag_of

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
            args += [flag_of(f, value)] if value != default else []
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


def trainer_pids() -> dict[Path, int]:
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
    return (trainer_pids() if trainers is None else trainers).get(run)


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
    others = len(trainer_pids())
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
        atomic_write(run / "config.json", json.dumps(config.to_dict(), indent=2))  # the trainer rewrites it
        with open(run / "train.log", "a" if config.resume else "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "core.train", *train_args(config)],
                cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
            )
        _children[process.pid] = process
        atomic_write(run / "pid", str(process.pid))
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
