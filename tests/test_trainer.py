"""Training: learning on synthetic data, run folder contents, stop/resume, early stopping."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from core.train import parse_args
from core.data.synthetic import make_synthetic
from core.training.config import TrainConfig
from core.training.history import read_history
from core.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent


def epochs_of(run: Path) -> list[dict]:
    return [e for e in read_history(run / "history.jsonl") if e["event"] == "epoch"]


def test_short_synthetic_training_learns(tmp_path: Path) -> None:
    data = make_synthetic(n_volumes=8, slices_per_volume=12, size=64, seed=1)
    events: list[dict] = []
    config = TrainConfig(out=str(tmp_path / "run"), width=8, size=64, epochs=8, batch_size=8, lr=3e-3, val_fraction=0.25,
                         empty_fraction=1.0)  # every slice each epoch: enough steps for 8 short epochs
    summary = Trainer(config, callbacks=[events.append], data=data).fit()
    epochs = [e for e in events if e["event"] == "epoch"]
    assert summary["reason"] == "completed" and len(epochs) == 8
    first, best = epochs[0]["val"]["volume_dice_mean"], max(e["val"]["volume_dice_mean"] for e in epochs)
    assert best > 0.6 and best > first + 0.2, [e["val"]["volume_dice_mean"] for e in epochs]
    assert set(epochs[-1]["val_levels"]) == {"1", "2", "3", "4", "ens"}
    # the callback saw exactly what history.jsonl holds
    assert events == read_history(tmp_path / "run" / "history.jsonl")


def test_run_folder_is_complete_and_reproducible(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = TrainConfig(out=str(run), width=4, size=32, epochs=2, arch="unet")
    Trainer(config, data=make_synthetic(n_volumes=5, slices_per_volume=4, size=32)).fit()
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "history.jsonl", "last.pt", "split.json"]
    split = json.loads((run / "split.json").read_text())
    assert split["val"] and not set(split["train"]) & set(split["val"])
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())) == config
    model, meta = load_checkpoint(run / "best.pt")
    assert meta["model"]["arch"] == "unet" and meta["split"]["val"] == split["val"]
    assert meta["preprocessing"]["input_size"] == 32 and "optimizer" not in read_checkpoint(run / "best.pt")
    assert {"optimizer", "scheduler", "epoch"} <= set(read_checkpoint(run / "last.pt"))
    assert meta["metrics"]["dice"] == max(meta["history"], key=lambda e: e["score"])["val"]["dice"]


def test_early_stopping_and_existing_run_refused(tmp_path: Path) -> None:
    config = TrainConfig(out=str(tmp_path / "run"), width=4, size=32, epochs=10, lr=0.0, patience=1,
                         schedule="plateau")  # early stopping belongs to the plateau schedule
    data = make_synthetic(n_volumes=4, slices_per_volume=4, size=32)
    summary = Trainer(config, data=data).fit()
    assert summary["reason"] == "early_stopping" and summary["epoch"] == 2
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(config, data=data).fit()


def train_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "core.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_saves_last_and_resume_continues_the_same_history(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--data", "synthetic", "--width", "4", "--size", "32", "--batch-size", "4", "--out", str(run)]
    proc = train_cli(*args, "--epochs", "50")
    deadline = time.time() + 300
    while not [e for e in read_history(run / "history.jsonl") if e["event"] == "step" and e["epoch"] == 2][2:]:
        assert time.time() < deadline and proc.poll() is None, "training did not reach epoch 2"
        time.sleep(0.2)  # wait for epoch 1 and a few steps of epoch 2
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = read_history(run / "history.jsonl")
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "stopped"
    done = events[-1]["epoch"]
    assert done >= 1 and read_checkpoint(run / "last.pt")["epoch"] == done

    proc = train_cli("--out", str(run), "--epochs", str(done + 2), "--resume")  # the rest from config.json
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    events = read_history(run / "history.jsonl")
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(1, done + 3))
    assert [e["event"] for e in events].count("resume") == 1
    steps = [(e["epoch"], e["step"]) for e in events if e["event"] == "step"]
    assert len(steps) == len(set(steps)), "a partial epoch's steps were kept twice"
    assert read_checkpoint(run / "last.pt")["epoch"] == done + 2
    assert json.loads((run / "config.json").read_text())["width"] == 4


def test_resume_takes_saved_settings_and_given_flags_override(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig(out=str(run), width=4, size=32, epochs=3).to_dict()))
    config = parse_args(["--out", str(run), "--resume", "--epochs", "9"])
    assert (config.width, config.size, config.epochs, config.resume) == (4, 32, 9, True)
    assert parse_args(["--out", str(run), "--width", "12"]).size == TrainConfig().size


def test_worker_processes_and_fp32_give_a_complete_epoch(tmp_path: Path) -> None:
    config = TrainConfig(out=str(tmp_path / "run"), width=4, size=32, epochs=1, workers=1, precision="fp32")
    summary = Trainer(config, data=make_synthetic(n_volumes=4, slices_per_volume=4, size=32)).fit()
    assert summary["reason"] == "completed" and epochs_of(tmp_path / "run")[0]["val"]["n_images"] == 4  # 1 of 4 volumes


def test_init_from_starts_with_a_checkpoints_weights(tmp_path: Path) -> None:
    data = make_synthetic(n_volumes=4, slices_per_volume=4, size=32)
    first = TrainConfig(out=str(tmp_path / "a"), width=4, size=32, epochs=1)
    Trainer(first, data=data).fit()
    source, _ = load_checkpoint(tmp_path / "a" / "last.pt")
    tuned = Trainer(TrainConfig(out=str(tmp_path / "b"), width=4, size=32, epochs=0, init_from=str(tmp_path / "a" / "last.pt")), data=data)
    tuned._setup()
    for (name, a), b in zip(source.state_dict().items(), tuned.model.state_dict().values()):
        assert torch.equal(a, b.cpu()), name
    wrong = Trainer(TrainConfig(out=str(tmp_path / "c"), width=8, size=32, init_from=str(tmp_path / "a" / "last.pt")), data=data)
    with pytest.raises(CheckpointError, match="base_width: 4 there, 8 here"):
        wrong.fit()
    other_split = Trainer(TrainConfig(out=str(tmp_path / "d"), width=4, size=32, seed=5, init_from=str(tmp_path / "a" / "last.pt")), data=data)
    with pytest.raises(CheckpointError, match="would leak 1 of this run's validation volumes"):
        other_split.fit()
    patient = Trainer(TrainConfig(out=str(tmp_path / "e"), width=4, size=32, lr_patience=7), data=data)
    patient._setup()
    assert tuned.scheduler.patience == 3 and patient.scheduler.patience == 7


def test_progressive_run_starts_at_half_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.training.trainer as trainer_module
    seen: list[int] = []
    step = trainer_module.training_step
    monkeypatch.setattr(trainer_module, "training_step", lambda *a: seen.append(a[4].shape[-1]) or step(*a))
    config = TrainConfig(out=str(tmp_path / "run"), width=4, size=32, epochs=4, batch_size=4, coarse_share=0.5)
    Trainer(config, data=make_synthetic(n_volumes=4, slices_per_volume=4, size=32)).fit()
    half = len(seen) // 2
    assert len(seen) == 8 and set(seen[:half]) == {16} and set(seen[half:]) == {32}


def test_a_rerun_with_the_same_seed_repeats_every_step(tmp_path: Path) -> None:
    losses = []
    for name in ("a", "b"):
        config = TrainConfig(out=str(tmp_path / name), width=4, size=32, epochs=2, batch_size=4, augment="strong",
                             threads=1)
        Trainer(config, data=make_synthetic(n_volumes=4, slices_per_volume=4, size=32)).fit()
        losses.append([e["loss"] for e in read_history(tmp_path / name / "history.jsonl") if e["event"] == "step"])
    assert len(losses[0]) == 4 and losses[0] == losses[1]


def test_sgd_optimizer_trains_and_resumes_with_its_state(tmp_path: Path) -> None:
    data = make_synthetic(n_volumes=4, slices_per_volume=4, size=32)
    config = parse_args(["--out", str(tmp_path / "run"), "--width", "4", "--size", "32", "--epochs", "1",
                         "--optimizer", "sgd", "--lr", "1e-2"])
    Trainer(config, data=data).fit()
    resumed = Trainer(parse_args(["--out", str(tmp_path / "run"), "--resume", "--epochs", "2"]), data=data)
    resumed._setup()
    optimizer = resumed.optimizer
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.99
    assert all("momentum_buffer" in s for s in optimizer.state.values()) and optimizer.state  # restored, not fresh
    with pytest.raises(SystemExit):
        parse_args(["--optimizer", "rmsprop"])
