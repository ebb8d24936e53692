"""The optimisers ``--optimizer`` names: Adam (the seed design's) and SGD with Nesterov momentum (nnU-Net's).

Example:
    >>> import torch
    >>> opt = build_optimizer("sgd", torch.nn.Linear(2, 1).parameters(), lr=1e-2)
    >>> type(opt).__name__, opt.defaults["momentum"], opt.defaults["nesterov"]
    ('SGD', 0.99, True)
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

Factory = Callable[[Iterable[torch.nn.Parameter], float], torch.optim.Optimizer]
OPTIMIZERS: dict[str, Factory] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.99, nesterov=True, weight_decay=3e-5),
}


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The optimiser ``name`` (a key of ``OPTIMIZERS``) over ``params`` at learning rate ``lr``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {tuple(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr)
