"""core.runs with real (tiny) training processes: launch, list, watch, stop, resume, failure."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.runs import (
    PROJECT_ROOT,
    RunError,
    describe,
    is_alive,
    launch,
    list_runs,
    log_tail,
    progress,
    read_run_history,
    run_folder,
    run_pid,
    stop,
    train_args,
)
from core.train import parse_args
from core.training.config import TrainConfig

TINY = {"data": "synthetic", "width": 4, "size": 32, "batch_size": 8}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training children inherit one thread each: fast and fair on a busy 2-core machine."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def wait_until(condition, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def has_event(run: Path, kind: str) -> bool:
    return any(e["event"] == kind for e in read_run_history(run))


def test_train_args_reproduce_the_config() -> None:
    config = TrainConfig(data="/data/x", out="/tmp/r", arch="unet", width=12, deep_supervision=False,
                         ds_weights=[1.0, 0.5], epochs=3, lr=3e-4, size=96, alpha=0.25, max_minutes=2.5,
                         empty_fraction=0.3, batch_dice=True, lr_patience=5, resume=True)
    assert parse_args(train_args(config)) == config
    assert parse_args(train_args(TrainConfig(out="x"))) == TrainConfig(out="x")


def test_launch_trains_to_completion_and_is_listed(tmp_path: Path) -> None:
    run = tmp_path / "demo"
    pid = launch(run, TrainConfig(**TINY, epochs=2))
    assert int((run / "pid").read_text()) == pid
    assert is_alive(run)
    wait_until(lambda: not is_alive(run), what="the run to finish")
    info = describe(run)
    assert (info.status, info.epoch, info.epochs, info.pid) == ("completed", 2, 2, None)
    assert info.best is not None and info.last is not None and info.best_score is not None
    assert info.config is not None and info.config.width == 4 and Path(info.config.out) == run.resolve()
    events = read_run_history(run)
    assert [e["event"] for e in events if e["event"] != "step"] == ["start", "epoch", "epoch", "end"]
    assert progress(events).fraction == 1.0
    (tmp_path / "not_a_run").mkdir()
    assert [r.name for r in list_runs(tmp_path)] == ["demo"]
    with pytest.raises(RunError, match="exists already"):
        launch(run, TrainConfig(**TINY, epochs=2))


def test_shell_started_run_is_found_refused_stopped_and_resumed(tmp_path: Path) -> None:
    run = tmp_path / "long"
    # started as from a shell: no pid file, found among the machine's core.train processes
    process = subprocess.Popen(
        [sys.executable, "-m", "core.train", *train_args(TrainConfig(**TINY, epochs=200, out=str(run)))],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: has_event(run, "step"), what="the first step")
        assert not (run / "pid").exists()
        assert run_pid(run) == process.pid
        assert describe(run).status == "running"
        with pytest.raises(RunError, match="training already"):
            launch(run, TrainConfig(**TINY, epochs=200))
        assert stop(run, wait=60)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    info = describe(run)
    assert info.status == "stopped" and info.last is not None and not info.alive
    assert read_run_history(run)[-1]["reason"] == "stopped"
    assert not stop(run)

    launch(run, TrainConfig(**TINY, epochs=info.epoch + 1, resume=True))
    wait_until(lambda: not is_alive(run), what="the resumed run to finish")
    resumed = describe(run)
    assert resumed.status == "completed" and resumed.epoch == info.epoch + 1
    assert has_event(run, "resume")


def test_failed_run_shows_its_error(tmp_path: Path) -> None:
    run = tmp_path / "broken"
    launch(run, TrainConfig(**{**TINY, "data": str(tmp_path / "missing")}, epochs=1))
    wait_until(lambda: not is_alive(run), what="the run to fail")
    info = describe(run)
    assert info.status == "failed" and info.config.data == str(tmp_path / "missing")  # from launch's config.json
    assert "no such folder" in log_tail(run)


def test_pid_file_of_another_process_is_not_a_live_run(tmp_path: Path) -> None:
    run = tmp_path / "stale"
    run.mkdir()
    (run / "pid").write_text(str(os.getpid()))  # alive, but not a trainer (a reused pid)
    (run / "config.json").write_text("{}")
    if Path("/proc").is_dir():
        assert not is_alive(run)
        assert describe(run).status == "failed"


def test_progress_and_eta() -> None:
    events = [{"event": "start", "epoch": 0, "epochs": 2, "steps_per_epoch": 10, "time": 100.0},
              {"event": "step", "epoch": 1, "step": 5, "steps": 10, "loss": 1.0, "lr": 1e-3, "time": 110.0}]
    p = progress(events, now=110.0)
    assert (p.epoch, p.step, p.fraction, p.elapsed, p.eta) == (1, 5, 0.25, 10.0, 30.0)
    resumed = [{"event": "resume", "epoch": 1, "epochs": 3, "steps_per_epoch": 10, "time": 0.0},
               {"event": "step", "epoch": 2, "step": 10, "steps": 10, "loss": 1.0, "lr": 1e-3, "time": 20.0},
               {"event": "epoch", "epoch": 2, "time": 21.0},
               {"event": "end", "epoch": 2, "reason": "stopped", "time": 22.0}]
    p = progress(resumed)
    assert (p.epoch, p.fraction, p.elapsed, p.eta) == (2, 0.5, 22.0, 0.0)
    assert progress([]) is None
    limited = [{**events[0], "epochs": 200, "config": {"max_minutes": 0.5}}, events[1]]
    assert progress(limited, now=110.0).eta == 20.0  # 30 s allowed, 10 s gone: not 200 epochs' worth


@pytest.mark.parametrize("name", ["..", "../escape", "a/b", "/etc", ".hidden", "", "x" * 65, "run name"])
def test_run_folder_refuses_names_that_leave_the_runs_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(RunError, match="not a usable run name"):
        run_folder(name, tmp_path)


def test_run_folder_refuses_a_symlink_out_of_the_runs_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "runs", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "linked").symlink_to(outside)
    with pytest.raises(RunError, match="points outside"):
        run_folder("linked", root)
    assert run_folder("lgg-1.b_2", root) == root.resolve() / "lgg-1.b_2"
