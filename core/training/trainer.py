"""The training loop: Adam, a learning-rate schedule (plateau, or cosine/poly over epochs or a time
budget), deep supervision, an optional weight average (EMA), checkpoints.

Every run leaves a folder that reproduces it::

    RUN/config.json     the TrainConfig
    RUN/split.json      train / validation volume (patient) ids
    RUN/history.jsonl   one JSON event per line: start, step, epoch, end
    RUN/best.pt         best validation score (volume Dice where the data has volumes, else Dice)
    RUN/last.pt         the latest state, with optimizer and scheduler, for --resume

Under ``torchrun`` every process trains on its share of each epoch with DistributedDataParallel,
validates its share of the validation slices, and the metrics are summed over processes; only
rank 0 writes the run folder, which is the same as a single process's.
"""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.checkpoint import CheckpointError, atomic_save, default_normalization, make_checkpoint, read_checkpoint
from core.data import (DataError, EpochSampler, SliceDataset, SliceSet, channels_and_classes, input_size,
                       intensity_windows, label_names, load_source, split_volumes, train_augmentation)
from core.data.intensity import windows_of
from core.files import atomic_write
from core.evaluation import evaluate_loader
from core.inference import normalize
from core.levels import deepest
from core.losses import DeepSupervisionLoss, SelfDistillationLoss, build_loss
from core.metrics import headline
from core.models import build_model, model_config
from core.runtime import autocast, autocast_dtype, memory_format, select_device
from core.training.config import TrainConfig
from core.training.distributed import Distributed
from core.training.history import Callback, History
from core.training.optimizers import build_optimizer
from core.training.schedule import lr_factor


def score_of(metrics: dict[str, float]) -> float:
    """The number best.pt maximises: the headline score (``core.metrics.headline``) of the deepest head."""
    return metrics[headline([metrics])[0]]


def training_step(
    model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
    images: torch.Tensor, masks: torch.Tensor, normalization: dict[str, list[float]], dtype: torch.dtype | None,
) -> float:
    """One optimisation step on a uint8 batch, as the trainer runs it; returns the loss.

    Normalisation happens on the model's device, the forward pass under autocast (bf16 on CPUs
    that have it, AMP on CUDA) in channels_last, the loss in fp32.
    """
    device = next(model.parameters()).device
    x = normalize(images.to(device, non_blocking=True), normalization["mean"], normalization["std"])
    masks = masks.to(device, non_blocking=True)
    with autocast(device, dtype):
        outputs = model(x)
    loss = criterion(outputs, masks)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


def classes_in(masks: np.ndarray) -> int:
    """``num_classes`` for class-index masks: 1 for binary (sigmoid), else the highest index + 1."""
    highest = int(masks.max()) if masks.size else 0
    return 1 if highest <= 1 else highest + 1


def halve(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch at half its size, for the coarse start of a progressive run.

    Images are area-averaged (still on the 0..255 scale ``normalize`` expects), masks subsampled.

    Example:
        >>> images, masks = halve(torch.full((2, 3, 8, 8), 255, dtype=torch.uint8), torch.ones(2, 8, 8))
        >>> tuple(images.shape), tuple(masks.shape), float(images.max())
        ((2, 3, 4, 4), (2, 4, 4), 255.0)
    """
    return F.avg_pool2d(images.float(), 2), masks[:, ::2, ::2]


class Trainer:
    """Runs one training described by a ``TrainConfig``; ``fit()`` returns the final summary.

    ``callbacks`` receive every event dict as it is written to ``history.jsonl``. ``request_stop()``
    (also wired to SIGINT/SIGTERM in the main thread) ends the run after the current step with
    ``last.pt`` saved.
    """

    def __init__(self, config: TrainConfig, callbacks: Iterable[Callback] = (), data: SliceSet | None = None) -> None:
        self.config = config
        self.run = Path(config.out)
        self.history = History(self.run / "history.jsonl", callbacks)
        self.stop_event = threading.Event()
        self._data = data

    def request_stop(self, *_: Any) -> None:
        self.stop_event.set()

    # -- setup -------------------------------------------------------------------------------
    def _setup(self) -> None:
        """Everything ``fit`` needs, in order: runtime, data, model and optimiser, resumed state, run folder."""
        self._setup_runtime()
        resume_state = self._resume_state()
        windows = self._resolve_data_defaults(resume_state)
        self._setup_data(resume_state, windows)
        self._setup_model()
        if resume_state:
            self._restore(resume_state)
        elif self.config.init_from:
            self._load_initial_weights(Path(self.config.init_from))
        self.model = self.dist.wrap(self.net)  # what trains; self.net is what is evaluated and saved
        if self.dist.is_main:
            self._prepare_run_folder(resumed=bool(resume_state))

    def _setup_runtime(self) -> None:
        c = self.config
        if c.threads:
            torch.set_num_threads(c.threads)
        self.dist, self.device = Distributed.from_env(select_device(c.device))
        if self.device.type == "cuda":  # one input size per run: let cuDNN time its kernels once and keep the fastest
            torch.backends.cudnn.benchmark = True
        self.history.write = self.dist.is_main
        torch.manual_seed(c.seed)  # the same initial weights on every rank
        np.random.seed(c.seed + self.dist.rank)  # different augmentations on each
        self.dtype = autocast_dtype(self.device, c.precision)
        self.clock = time.process_time if c.budget_clock == "cpu" else time.time

    def _resolve_data_defaults(self, resume_state: dict[str, Any] | None) -> dict[int, tuple[float, float]]:
        """Fill the options left to follow the data (channels, classes, intensity, size); return its CT windows
        (a resumed run's own, as saved)."""
        c, data = self.config, self._data
        if c.in_channels is None or c.num_classes is None:
            channels, classes = (channels_and_classes(c.data) if data is None
                                 else (data.images.shape[-1], classes_in(data.masks)))
            c.in_channels, c.num_classes = c.in_channels or channels, c.num_classes or classes
        if c.channel_fill > 0 and not 0 <= c.fill_from < c.in_channels:
            raise DataError(f"{c.data}: --fill-from {c.fill_from} names no channel of its {c.in_channels} "
                            f"(0..{c.in_channels - 1})")
        if data is not None:
            windows = {}
        else:
            windows = windows_of(resume_state["preprocessing"]) if resume_state else intensity_windows(c.data)
        if c.intensity is None:  # CT keeps its Hounsfield window; anything else is rescaled per volume
            c.intensity = "none" if windows else "volume"
        if c.size is None:
            c.size = data.images.shape[1] if data is not None else input_size(c.data, c.num_classes, axis=c.axis)
        return windows

    def _setup_data(self, resume_state: dict[str, Any] | None, windows: dict[int, tuple[float, float]]) -> None:
        """The split (the saved one when resuming), the train and validation sets and their loaders."""
        c = self.config
        slices = self._data if self._data is not None else load_source(
            c.data, c.size, c.in_channels, c.num_classes, intensity=c.intensity, windows=windows, axis=c.axis,
            cache=c.cache or Path(c.out).parent / ".cache")
        if c.max_volumes:
            slices = slices.select_volumes(sorted(set(slices.volumes))[: c.max_volumes])
        if resume_state:
            train_ids, val_ids = resume_state["split"]["train"], resume_state["split"]["val"]
        else:
            train_ids, val_ids = split_volumes(slices.volumes, c.val_fraction, c.seed, c.folds, c.fold)
        self.split = {"data": c.data, "seed": c.seed, "train": train_ids, "val": val_ids}
        if c.folds:
            self.split |= {"folds": c.folds, "fold": c.fold}
        self.train_set, self.val_set = slices.select_volumes(train_ids), slices.select_volumes(val_ids)
        self.val_volumes = self.val_set.volumes if slices.has_volumes else None
        self.normalization = default_normalization(c.in_channels) | {"intensity": c.intensity}
        if windows:
            self.normalization["windows"] = {str(k): list(w) for k, w in windows.items()}
        self.label_names = label_names(c.data) if self._data is None else None
        if self.label_names:  # a NIfTI dataset: its values were windowed to 8 bits, as scans' are
            self.normalization["windowed"] = True
        if c.axis != "axial":
            self.normalization["axis"] = c.axis

        areas = self.train_set.areas if c.sampling == "area" else None
        self.sampler = EpochSampler(self.train_set.positive, c.empty_fraction, c.seed,
                                    self.dist.world_size, self.dist.rank, areas)
        loader_args = {"num_workers": c.workers, "persistent_workers": c.workers > 0,
                       "pin_memory": self.device.type == "cuda"}
        augmentation = train_augmentation(c.augment, c.seed + self.dist.rank,  # seeded: a rerun draws the same
                                          c.channel_fill, c.fill_from)
        self.train_loader = DataLoader(SliceDataset(self.train_set, augmentation), c.batch_size,
                                       sampler=self.sampler, drop_last=len(self.sampler) > c.batch_size, **loader_args)
        val_share = range(self.dist.rank, len(self.val_set), self.dist.world_size)
        self.val_loader = DataLoader(SliceDataset(self.val_set), c.batch_size, sampler=val_share, **loader_args)

    def _setup_model(self) -> None:
        """The network, loss, optimiser, weight average and a fresh run's counters."""
        c = self.config
        self.net = build_model({
            "arch": c.arch, "in_channels": c.in_channels, "num_classes": c.num_classes,
            "base_width": c.width, "deep_supervision": c.deep_supervision,
        }).to(self.device, memory_format=memory_format(self.device))
        self.criterion = self._build_loss()
        self.optimizer, self.scheduler = self.configure_optimizers()
        self.ema = self._build_ema()
        self.scaler = torch.amp.GradScaler(enabled=self.dtype == torch.float16 and self.device.type == "cuda")
        self.epoch, self.best_score, self.best_epoch, self.epochs_history = 0, -math.inf, 0, []
        self.trained_seconds = 0.0  # the run so far on its budget clock, over all sittings

    def _restore(self, state: dict[str, Any]) -> None:
        """Weights, weight average, optimiser, schedule and counters of ``last.pt``."""
        self.net.load_state_dict(state.get("train_state_dict", state["state_dict"]))
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["state_dict"])
            self.ema.n_averaged.fill_(state["ema"]["updates"])
        self.trained_seconds = state.get("trained_seconds", 0.0)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.epochs_history = state["history"]

    def _prepare_run_folder(self, resumed: bool) -> None:
        """History kept up to the resumed epoch (else started anew), temporary files of a killed process
        removed, config and split written."""
        if resumed:
            self.history.truncate_after(self.epoch)
        else:
            self.history.path.unlink(missing_ok=True)
        self.run.mkdir(parents=True, exist_ok=True)
        for pattern in (".*.pt.*", ".*.json.*", ".*.jsonl.*", "*.tmp"):  # left by a process killed mid-write
            for stale in self.run.glob(pattern):
                stale.unlink(missing_ok=True)
        atomic_write(self.run / "config.json", json.dumps(self.config.to_dict(), indent=2))
        atomic_write(self.run / "split.json", json.dumps(self.split, indent=2))

    # -- builders: override these to change the loss, the optimiser or the weight averaging ----
    def _build_loss(self) -> nn.Module:
        """The ``--loss`` (``core.losses.LOSSES``; by default alpha*BCE + (1-alpha)*soft Dice, the seed
        recipe) on every deep-supervision head, plus self-distillation of the shallow heads from the
        deepest with ``--distill``."""
        c = self.config
        loss = DeepSupervisionLoss(build_loss(c.loss, c), c.ds_weights)
        return SelfDistillationLoss(loss, c.distill) if c.distill else loss

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, Any]:
        """The ``--optimizer`` (Adam by default), and ReduceLROnPlateau for the plateau schedule (other
        schedules set lr per step)."""
        c = self.config
        optimizer = build_optimizer(c.optimizer, self.net.parameters(), c.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=c.lr_patience)
        return optimizer, scheduler

    def _build_ema(self) -> AveragedModel | None:
        """An exponential moving average of the weights (``--ema``), or None."""
        decay = self.config.ema
        if not decay:
            return None

        def average(averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
            warm = min(decay, (1 + float(updates)) / (10 + float(updates)))  # early on, follow the weights
            return averaged + (current - averaged) * (1 - warm)

        return AveragedModel(self.net, avg_fn=average, use_buffers=True)

    @property
    def model_to_evaluate(self) -> nn.Module:
        """What is validated and saved: the weight average where there is one."""
        return self.ema.module if self.ema is not None else self.net

    def _load_initial_weights(self, path: Path) -> None:
        """Copy a checkpoint's weights into the new model (``--init-from``); configs must agree."""
        source = read_checkpoint(path)
        ours = model_config(self.net)
        theirs = {**ours, **{k: v for k, v in source["model"].items() if k in ours}}
        if theirs != ours:
            diff = ", ".join(f"{k}: {theirs[k]} there, {ours[k]} here" for k in ours if theirs[k] != ours[k])
            raise CheckpointError(f"{path}: --init-from needs the same architecture ({diff})")
        leaked = sorted(set(source.get("split", {}).get("train", [])) & set(self.split["val"]))
        if leaked:
            raise CheckpointError(
                f"{path}: --init-from would leak {len(leaked)} of this run's validation volumes "
                f"({', '.join(leaked[:3])}{', ...' if len(leaked) > 3 else ''}) that the checkpoint was trained on; "
                "use the same --seed and --val-fraction as that run")
        self.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in source["state_dict"].items()})

    def _resume_state(self) -> dict[str, Any] | None:
        last = self.run / "last.pt"
        if not self.config.resume:
            if last.exists():
                raise FileExistsError(f"{self.run} already holds a run; pass --resume to continue it or pick another --out")
            return None
        if not last.exists():
            raise FileNotFoundError(f"--resume: no {last} to resume from")
        return read_checkpoint(last)

    # -- checkpoints -------------------------------------------------------------------------
    def _checkpoint(self, metrics: dict[str, Any], with_state: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "metrics": metrics, "history": self.epochs_history, "split": self.split,
            "train_config": self.config.to_dict(), "epoch": self.epoch,
            "best_score": self.best_score, "best_epoch": self.best_epoch,
        }
        meta["trained_seconds"] = self.trained_seconds
        if self.label_names:
            meta["labels"] = self.label_names
        if with_state:
            meta["optimizer"] = self.optimizer.state_dict()
            meta["scheduler"] = self.scheduler.state_dict()
            if self.ema is not None:
                meta["train_state_dict"] = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        if self.ema is not None:
            meta["ema"] = {"decay": self.config.ema, "updates": int(self.ema.n_averaged)}
        return make_checkpoint(self.model_to_evaluate, self.config.size, self.normalization, **meta)

    def _save(self, metrics: dict[str, Any], name: str, with_state: bool) -> None:
        if self.dist.is_main:
            atomic_save(self._checkpoint(metrics, with_state), self.run / name)

    # -- loop --------------------------------------------------------------------------------
    def progress(self, step: int = 0) -> float:
        """How far the run is (0..1): time used of ``--budget-minutes``, else epochs (and steps) done."""
        c = self.config
        if c.budget_minutes:
            return (self.trained_seconds + self.clock() - self.sitting_start) / (60 * c.budget_minutes)
        return (self.epoch + step / max(len(self.train_loader), 1)) / max(c.epochs, 1)

    def _set_lr(self, step: int) -> None:
        c = self.config
        if c.schedule != "plateau":
            for group in self.optimizer.param_groups:
                group["lr"] = c.lr * lr_factor(c.schedule, self.progress(step), c.warmup)

    def _train_epoch(self, bar: tqdm) -> float:
        """One pass over the epoch's draw; ends early when a time budget runs out (all ranks agree)."""
        self.model.train()
        self.sampler.set_epoch(self.epoch)
        total, n = 0.0, 0
        for step, (images, masks, _) in enumerate(self.train_loader):
            self._set_lr(step)
            if self.progress(step) < self.config.coarse_share:
                images, masks = halve(images, masks)
            value = training_step(self.model, self.criterion, self.optimizer, self.scaler, images, masks,
                                  self.normalization, self.dtype)
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at epoch {self.epoch + 1}, step {step + 1}; try a lower --lr")
            if self.ema is not None:
                self.ema.update_parameters(self.net)
            total, n = total + value * len(images), n + len(images)
            bar.update(1)
            bar.set_postfix(epoch=self.epoch + 1, loss=f"{value:.4f}")
            self.history.emit({"event": "step", "epoch": self.epoch + 1, "step": step + 1,
                               "steps": len(self.train_loader), "loss": value,
                               "lr": self.optimizer.param_groups[0]["lr"], "time": time.time()})
            if self.dist.any(self.stop_event.is_set()):
                self.stop_event.set()
                return math.nan
            if self.dist.any(self._budget_spent()):
                break
        total, n = self.dist.sum([total, n])
        return total / max(n, 1)

    def _budget_spent(self) -> bool:
        return bool(self.config.budget_minutes) and self.progress() >= 1

    def _finished(self) -> bool:
        return self._budget_spent() if self.config.budget_minutes else self.epoch >= self.config.epochs

    def _validate(self) -> dict[str, Any]:
        """Metrics of every level on the validation share (``{}`` levels when there is no validation set)."""
        if len(self.val_set) == 0:
            return {"levels": {}, "loss": None}
        return evaluate_loader(self.model_to_evaluate, self.val_loader, self._preprocessing(), self.val_volumes,
                               self.dtype, self.criterion, gather=self.dist.gather if self.dist.enabled else None)

    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` (or the time budget), early stopping, ``max_minutes`` or a stop request."""
        handlers = self._install_signal_handlers()  # first, so a stop during data loading is not lost
        try:
            self._setup()
        except BaseException:
            self._restore_signal_handlers(handlers)
            raise
        c = self.config
        start, self.sitting_start = time.time(), self.clock()
        reason = "stopped" if self.stop_event.is_set() else "completed"
        self.history.emit({"event": "resume" if c.resume else "start", "epoch": self.epoch, "time": start,
                           "config": c.to_dict(), "device": str(self.device), "precision": str(self.dtype),
                           "train_slices": len(self.train_set), "val_slices": len(self.val_set),
                           "steps_per_epoch": len(self.train_loader), "epochs": c.epochs,
                           "budget_minutes": c.budget_minutes, "trained_seconds": self.trained_seconds,
                           "world_size": self.dist.world_size})
        bar = tqdm(total=None if c.budget_minutes else (c.epochs - self.epoch) * len(self.train_loader),
                   unit="step", desc="training", disable=not self.dist.is_main)
        try:
            while not self._finished() and not self.stop_event.is_set():
                t0 = time.time()
                train_loss = self._train_epoch(bar)
                if self.stop_event.is_set():
                    reason = "stopped"
                    break
                result = self._validate()
                self.epoch += 1
                self.trained_seconds += self.clock() - self.sitting_start
                self.sitting_start = self.clock()
                levels = result["levels"]
                final = deepest(levels)
                score = score_of(final) if final else float(self.epoch)  # no validation: the latest is the best
                if c.schedule == "plateau" and final:
                    self.scheduler.step(final["iou"])
                improved = score > self.best_score
                if improved:
                    self.best_score, self.best_epoch = score, self.epoch
                record = {"event": "epoch", "epoch": self.epoch, "train_loss": train_loss, "val_loss": result["loss"],
                          "val": final, "val_levels": levels, "score": score if final else None, "best": improved,
                          "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.time() - t0,
                          "trained_seconds": self.trained_seconds, "time": time.time()}
                self.epochs_history.append(record)
                # the event first: a crash before last.pt is saved then repeats this epoch on --resume
                # (its events are dropped), instead of leaving last.pt ahead of history.jsonl
                self.history.emit(record)
                if improved:
                    self._save(final | {"levels": levels}, "best.pt", with_state=False)
                self._save(final | {"levels": levels}, "last.pt", with_state=True)
                if c.schedule == "plateau" and self.epoch - self.best_epoch >= c.patience:
                    reason = "early_stopping"
                    break
                elapsed = (time.time() - start) / 60
                if self.dist.any(bool(c.max_minutes) and elapsed + (time.time() - t0) / 60 > c.max_minutes):
                    reason = "time_limit"
                    break
        finally:
            bar.close()
            self._restore_signal_handlers(handlers)
        if reason == "completed" and self.dist.any(self.stop_event.is_set()):  # the stop came during validation
            reason = "stopped"
        if reason == "stopped":
            self.trained_seconds += self.clock() - self.sitting_start
            last_metrics = self.epochs_history[-1]["val"] if self.epochs_history else {}
            self._save(last_metrics, "last.pt", with_state=True)
        summary = {"event": "end", "epoch": self.epoch, "reason": reason, "best_epoch": self.best_epoch,
                   "best_score": self.best_score if self.best_score > -math.inf and self.val_set else None,
                   "minutes": (time.time() - start) / 60, "trained_minutes": self.trained_seconds / 60,
                   "time": time.time()}
        self.history.emit(summary)
        self.dist.shutdown()
        return summary

    def _preprocessing(self) -> dict[str, Any]:
        return {"input_size": self.config.size, **self.normalization}

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signal_handlers(handlers: dict[int, Any]) -> None:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

