"""Everything a training run needs, saved as ``RUN/config.json``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainConfig:
    """Training options; the CLI flags of ``python -m core.train`` map one to one onto these."""

    data: str = "synthetic"
    out: str = "runs/run"
    arch: str = "unetpp"
    width: int = 32
    deep_supervision: bool = True
    ds_weights: list[float] | None = None
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    size: int = 256
    alpha: float = 0.5
    batch_dice: bool = False
    val_fraction: float = 0.2
    seed: int = 0
    workers: int = 0
    threads: int | None = None
    device: str = "auto"
    precision: str = "auto"
    patience: int = 10
    lr_patience: int = 3
    empty_fraction: float = 1.0
    max_minutes: float | None = None
    max_volumes: int | None = None
    in_channels: int = 3
    num_classes: int = 1
    resume: bool = False
    init_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
