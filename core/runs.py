"""Training runs as separate processes: launch, list, watch, stop.

The processes are ``core.run_process``'s job, what a run folder says ``core.run_status``'s; this
module gives both.

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

from core.paths import PROJECT_ROOT, runs_root
from core.run_process import RUN_NAME, RunError, is_alive, launch, run_folder, run_pid, stop, train_args
from core.run_status import (
    Progress, RunInfo, describe, is_run_folder, list_runs, log_tail, progress, read_run_history, run_config,
)

__all__ = ["PROJECT_ROOT", "RUN_NAME", "Progress", "RunError", "RunInfo", "describe", "is_alive", "is_run_folder",
           "launch", "list_runs", "log_tail", "progress", "read_run_history", "run_config", "run_folder", "run_pid",
           "runs_root", "stop", "train_args"]
