"""Everything a training run needs, saved as ``RUN/config.json``; the one source of the training flags.

Each field carries its help and choices, and both ``python -m core.train``'s parser
(``core.train.build_parser``) and the app's argv builder (``core.runs.train_args``) are generated
from them, so a new option is one field here.
"""
from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any

from core.data.augmentation import AUGMENTATIONS
from core.data.intensity import POLICIES
from core.orientation import AXES
from core.losses import LOSSES
from core.models import ARCHITECTURES
from core.runtime import DEVICE_HELP, PRECISION_HELP, PRECISIONS
from core.training.optimizers import OPTIMIZERS
from core.training.schedule import SCHEDULES


def option(default: Any, help: str = "", choices: tuple | None = None) -> Any:  # noqa: A002
    """A config field with its CLI help and its choices."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Training options; the CLI flags of ``python -m core.train`` map one to one onto these.

    The defaults are the recipe chosen by cross-validation in ``docs/recipe.md`` (per-volume
    intensity, strong intensity augmentation, warm-up + cosine decay, a weight average, slices
    drawn by lesion area, width 16; the input size follows the data: 128 px for the LGG MRI); the
    seed recipe is ``--intensity none --augment mild --schedule plateau --ema 0 --sampling positive``.
    """

    data: str = option("synthetic", "'synthetic', a kaggle_3m folder, or a folder with images/ and masks/")
    out: str = option("runs/run", "run folder (config, split, history.jsonl, best.pt, last.pt)")
    arch: str = option("unetpp", choices=ARCHITECTURES.keys())  # a live view: registered names
    width: int = option(16, "filters of the first level (n in n*[1,2,4,8,16]; the UNet++ paper uses 32)")
    deep_supervision: bool = option(True, "four heads, on x0_1..x0_4, each trained (UNet++ only; "
                                          "--no-deep-supervision: one head on x0_4)")
    ds_weights: list[float] | None = option(None, "loss weight per head (default equal)")
    distill: float = option(0.0, "self-distillation: weight of a loss pulling the shallow heads towards the "
                                 "deepest head's probabilities, for the pruned levels (0: off)")
    epochs: int = option(50, "epochs to train (the schedule's length unless --budget-minutes is given)")
    budget_minutes: float | None = option(
        None, "lay the whole schedule (warm-up, decay, end) over this many minutes of wall time, "
              "measured as training runs; --resume continues it. Replaces --epochs")
    budget_clock: str = option("wall", "what --budget-minutes counts: wall time, or this process's CPU time "
                                       "(fair comparisons of one-thread runs on a shared machine)", ("wall", "cpu"))
    batch_size: int = option(8)
    optimizer: str = option("adam", "adam; or sgd: SGD with Nesterov momentum 0.99 and weight decay 3e-5, as "
                                    "nnU-Net trains (give it --lr 1e-2)", tuple(OPTIMIZERS))
    lr: float = option(1e-3, "learning rate (the peak, after warm-up)")
    schedule: str = option("cosine", "plateau: ReduceLROnPlateau on validation IoU; cosine / poly: "
                                      "decay to zero at the end of the run", SCHEDULES)
    warmup: float = option(0.05, "share of the run with a linear learning-rate warm-up (cosine / poly)")
    ema: float = option(0.995, "decay of an exponential moving average of the weights, which is validated and "
                             "saved as the model (0: off; e.g. 0.995)")
    size: int | None = option(None, "slices are resized to size x size (default: follows the data, the smallest "
                                     "multiple of 32 at which its masks survive the resize, Dice >= 0.99 for "
                                     "every class; 128 for the LGG MRI)")
    coarse_share: float = option(0.0, "progressive resizing: this first share of the run trains at half the "
                                      "input size (steps about 3x cheaper), the rest at full size (0: off)")
    axis: str = option("axial", "the plane NIfTI volumes are sliced in (axial, coronal, sagittal); stored in the "
                                "checkpoint and used again at inference", AXES)
    intensity: str | None = option(None, "none: slices as read; volume: each volume's channels stretched from "
                                         "their 1st..99.5th body percentile to 0..255 (a 2D image is its own "
                                         "volume). Default: follows the data: none for CT (a fixed Hounsfield "
                                         "window), else volume", POLICIES)
    augment: str = option("strong", "mild: flips, small affine, slight brightness/contrast; strong: adds "
                                  "per-channel gamma/contrast/brightness, noise and blur", AUGMENTATIONS)
    channel_fill: float = option(0.0, "share of training slices whose other channels are, each with probability "
                                      "1/2, replaced by channel --fill-from: a missing sequence, as the Kaggle LGG "
                                      "set fills one (0: off)")
    fill_from: int = option(1, "the channel --channel-fill copies (1: FLAIR in the Kaggle LGG set)")
    loss: str = option("bce_dice", "loss on every head (core.losses.LOSSES); bce_dice: alpha*BCE + (1-alpha)*soft Dice",
                       LOSSES.keys())
    alpha: float = option(0.5, "loss = alpha*BCE + (1-alpha)*soft Dice")
    batch_dice: bool = option(False, "Dice term over the whole batch, not per image "
                                     "(empty slices cost only their false positives)")
    val_fraction: float = option(0.2, "share of volumes (patients) held out; 0 trains on all")
    folds: int = option(0, "cross-validation: deal the volumes into K folds (0: use --val-fraction)")
    fold: int = option(0, "with --folds K: the fold (0..K-1) held out for validation")
    seed: int = option(0)
    workers: int = option(0, "DataLoader worker processes")
    threads: int | None = option(None, "CPU threads for torch (default: all cores); 1 when several runs "
                                       "share a small CPU")
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", PRECISION_HELP, PRECISIONS)
    patience: int = option(10, "early stopping (plateau schedule): epochs without a better score")
    lr_patience: int = option(3, "ReduceLROnPlateau: epochs without a better validation IoU before lr is "
                                 "divided by 10")
    empty_fraction: float = option(0.3, "share of slices with an empty mask drawn each epoch (all non-empty "
                                        "ones always are)")
    sampling: str = option("area", "positive: every lesion slice plus --empty-fraction of the empty ones; "
                                       "area: as many slices drawn with probability half by lesion area, half "
                                       "uniform (Buda et al.)", ("positive", "area"))
    max_minutes: float | None = option(None, "stop after the epoch that would pass this time")
    cache: str | None = option(None, "where a NIfTI dataset's slices are decoded once, as one .npy per case, and "
                                     "read from during training (data larger than memory trains); reused while "
                                     "the files and settings are unchanged (default: .cache beside the run folder)")
    max_volumes: int | None = option(None, "use only the first N volumes (patients), sorted by id: for quick tries")
    in_channels: int | None = option(None, "input channels (default: from the data: a NIfTI dataset's channels, "
                                           "else 3 (RGB))")
    num_classes: int | None = option(None, "1: a sigmoid on binary masks; >1: softmax over class-index masks "
                                           "(default: from the data: a NIfTI dataset's labels, else 1)")
    resume: bool = option(False, "continue the run in --out from its last.pt, with its saved settings "
                                 "(flags given override them)")
    init_from: str | None = option(None, "start from this checkpoint's weights (fine-tuning); its architecture "
                                         "must match")
    extra: dict[str, Any] = field(default_factory=dict, metadata={"cli": False})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The config saved as ``data``; options it predates take the values that reproduce how it ran.

        Example:
            >>> old = TrainConfig.from_dict({"data": "synthetic", "width": 8})  # a config.json from before EMA
            >>> old.ema, old.schedule, old.intensity, TrainConfig().ema
            (0.0, 'plateau', 'none', 0.995)
        """
        names = {f.name for f in fields(cls)}
        return cls(**(BEFORE_RECIPE | {k: v for k, v in data.items() if k in names}))


BEFORE_RECIPE = {  # options added with the recipe study, at the values that reproduce earlier runs
    "intensity": "none", "augment": "mild", "schedule": "plateau", "warmup": 0.0, "ema": 0.0,
    "budget_minutes": None, "budget_clock": "wall", "folds": 0, "fold": 0, "sampling": "positive",
    "distill": 0.0, "loss": "bce_dice", "coarse_share": 0.0,
}


def cli_fields() -> list[Field]:
    """The fields that are command-line flags, in declaration order."""
    return [f for f in fields(TrainConfig) if f.metadata.get("cli", True)]


def flag_of(f: Field, value: Any = None) -> str:
    """``--batch-size`` for ``batch_size``; a switch has both forms, and ``value=False`` gives the one that clears
    it (``--no-deep-supervision``)."""
    flag = "--" + f.name.replace("_", "-")
    return "--no-" + flag[2:] if value is False else flag


def default_of(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default
