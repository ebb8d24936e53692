"""Distributed training: ``torchrun --nproc_per_node=2 -m core.train`` on CPU (gloo).

The two-process run must train, write one run folder (rank 0 only) whose checkpoint has the
single-process format, and report validation metrics over all validation slices, equal to a
single-process evaluation of the same weights.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed
from torch.utils.data import DataLoader

from core.checkpoint import load_checkpoint, read_checkpoint
from core.data import EpochSampler, SliceDataset, load_source
from core.evaluation import evaluate_loader
from core.metrics import SegmentationMetrics
from core.runtime import autocast_dtype
from core.training.history import read_history

ROOT = Path(__file__).resolve().parent.parent
TRAIN_ARGS = ["--data", "synthetic", "--epochs", "2", "--width", "4", "--size", "32", "--batch-size", "8",
              "--empty-fraction", "1"]  # every slice each epoch: the step counts below rely on it


GLOO = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                          reason="this torch build has no gloo backend for CPU process groups")


def command(out: Path, nproc: int, *args: str) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    return [sys.executable, *launcher, "-m", "core.train", *TRAIN_ARGS, "--out", str(out), *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def train(out: Path, nproc: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(out, nproc, *args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


@GLOO
def test_torchrun_two_cpu_processes_train_one_run_folder_in_the_single_process_format(tmp_path: Path) -> None:
    two, one = tmp_path / "two", tmp_path / "one"
    result = train(two, 2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert train(one, 1).returncode == 0

    events = read_history(two / "history.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("end") == 1, "only rank 0 writes the history"
    assert kinds.count("epoch") == 2
    start = events[0]
    single_start = read_history(one / "history.jsonl")[0]
    assert start["world_size"] == 2 and single_start["world_size"] == 1
    per_rank = -(-start["train_slices"] // 2)
    assert start["steps_per_epoch"] == per_rank // 8 < single_start["steps_per_epoch"], "each rank trains on half"
    assert result.stdout.count('"reason"') == 1, "one summary line, from rank 0"

    epochs = [e for e in events if e["event"] == "epoch"]
    assert all(np.isfinite(e["train_loss"]) for e in epochs)
    assert epochs[-1]["val"]["n_images"] == start["val_slices"], "validation covers both ranks' shares"

    a = torch.load(two / "last.pt", weights_only=True)
    b = torch.load(one / "last.pt", weights_only=True)
    assert a.keys() == b.keys() and a["model"] == b["model"] and a["preprocessing"] == b["preprocessing"]
    assert {k: v.shape for k, v in a["state_dict"].items()} == {k: v.shape for k, v in b["state_dict"].items()}

    model, meta = load_checkpoint(two / "last.pt", torch.device("cpu"))
    val = load_source("synthetic", 32, intensity=meta["preprocessing"]["intensity"]).select_volumes(meta["split"]["val"])
    single = evaluate_loader(model, DataLoader(SliceDataset(val), 8), meta["preprocessing"], val.volumes,
                             autocast_dtype(torch.device("cpu"), "auto"))
    final = single["levels"][max(k for k in single["levels"] if k != "ens")]
    for key in ("dice", "iou", "volume_dice_mean"):
        assert meta["metrics"][key] == pytest.approx(final[key], abs=1e-3), key


@GLOO
def test_a_stop_reaches_every_rank_and_the_run_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = subprocess.Popen(command(run, 2, "--epochs", "500"), cwd=ROOT, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run / "last.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)  # what the app's Stop and Ctrl-C send; torchrun forwards it
    process.wait(timeout=120)
    events = read_history(run / "history.jsonl")
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "stopped"
    stopped_at = events[-1]["epoch"]
    assert read_checkpoint(run / "last.pt")["epoch"] == stopped_at >= 1
    result = train(run, 2, "--resume", "--epochs", str(stopped_at + 1))
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [e["epoch"] for e in read_history(run / "history.jsonl") if e["event"] == "epoch"]
    assert epochs == list(range(1, stopped_at + 2)), "each epoch once, the resumed one appended"


def test_epoch_sampler_shards_cover_the_epoch_with_equal_lengths() -> None:
    positive = np.random.default_rng(0).random(101) < 0.4
    whole = list(EpochSampler(positive, 0.5, seed=3))
    shards = [list(EpochSampler(positive, 0.5, seed=3, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    assert sum(len(s) for s in shards) - len(whole) < 3  # padding only
    assert set().union(*shards) == set(whole)


def test_metrics_merged_from_shares_equal_metrics_of_the_whole() -> None:
    gen = torch.Generator().manual_seed(0)
    probs, masks = torch.rand(10, 1, 8, 8, generator=gen), (torch.rand(10, 8, 8, generator=gen) > 0.6).long()
    ids = [f"v{i % 3}" for i in range(10)]
    whole = SegmentationMetrics()
    whole.update(probs, masks, ids)
    merged, other = SegmentationMetrics(), SegmentationMetrics()
    merged.update(probs[::2], masks[::2], ids[::2])
    other.update(probs[1::2], masks[1::2], ids[1::2])
    merged.merge(other)
    assert merged.compute() == pytest.approx(whole.compute())
    assert merged.per_volume() == pytest.approx(whole.per_volume())
