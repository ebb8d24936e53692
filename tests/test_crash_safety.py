"""``kill -9`` at any moment of a training run loses nothing that was finished.

A real ``python -m core.train`` process is killed with SIGKILL at several moments (during
steps, around checkpoint writes); after each kill ``best.pt`` and ``last.pt`` must load and
``--resume`` must continue from the last completed epoch with the history intact.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.checkpoint import load_checkpoint, read_checkpoint
from core.training.history import read_history

ROOT = Path(__file__).resolve().parent.parent
KILL_AFTER_S = [2.5, 1.7, 3.1, 0.9, 2.2]  # seconds after each (re)start; varied to hit steps and saves


def start(run: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "core.train", "--out", str(run), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def completed_epochs(run: Path) -> list[int]:
    return [e["epoch"] for e in read_history(run / "history.jsonl") if e["event"] == "epoch"]


def test_sigkill_at_any_moment_keeps_checkpoints_loadable_and_resume_continues(tmp_path: Path) -> None:
    run = tmp_path / "run"
    epochs = 12
    first = ["--data", "synthetic", "--width", "4", "--size", "32", "--batch-size", "4", "--epochs", str(epochs)]
    kills, proc = 0, start(run, *first)
    for delay in KILL_AFTER_S:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists() and proc.poll() is None:  # the first kill needs an epoch done
            assert time.monotonic() < deadline, "no last.pt within 120 s"
            time.sleep(0.1)
        time.sleep(delay)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        last = read_checkpoint(run / "last.pt")  # complete after any kill: written to a temporary file, renamed
        load_checkpoint(run / "best.pt")
        assert completed_epochs(run)[-1] >= last["epoch"] >= 1
        proc = start(run, "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills >= 3, "the run finished before it could be killed three times"
    assert completed_epochs(run) == list(range(1, epochs + 1))  # every epoch exactly once, in order
    events = read_history(run / "history.jsonl")
    steps = [(e["epoch"], e["step"]) for e in events if e["event"] == "step"]
    assert len(steps) == len(set(steps)), "steps of a killed epoch were kept twice"
    assert 1 <= [e["event"] for e in events].count("resume") <= kills  # a kill during start-up emits none
    assert read_checkpoint(run / "last.pt")["epoch"] == epochs
    assert not list(run.glob(".*")), "temporary files left behind"
