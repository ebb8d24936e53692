"""Training augmentation: geometric transforms plus, optionally, strong per-channel intensity changes.

``"mild"`` is the seed recipe's (flips, small affine, slight brightness/contrast). ``"strong"``
adds what a scan from another scanner or institution looks like: per-channel gamma, contrast and
brightness, noise and blur, so the model does not learn one site's intensity profile.
"""
from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

AUGMENTATIONS = ("mild", "strong")


class ChannelIntensity(A.ImageOnlyTransform):
    """Per channel and independently: ``x -> (x ** gamma) * scale + shift`` on [0, 1] intensities.

    Albumentations' gamma and brightness/contrast change every channel alike; MRI sequences
    (the channels here) vary independently between sites.

    Example:
        >>> image = np.full((4, 4, 3), 128, np.uint8)
        >>> out = ChannelIntensity(p=1.0)(image=image)["image"]
        >>> out.shape, out.dtype, len({int(out[0, 0, c]) for c in range(3)}) > 1
        ((4, 4, 3), dtype('uint8'), True)
    """

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.5), scale: tuple[float, float] = (0.75, 1.25),
                 shift: tuple[float, float] = (-0.1, 0.1), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.gamma, self.scale, self.shift = gamma, scale, shift

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        channels = data["image"].shape[-1] if data["image"].ndim == 3 else 1
        rng = self.random_generator
        return {
            "gamma": np.exp(rng.uniform(*np.log(self.gamma), channels)).astype(np.float32),
            "scale": rng.uniform(*self.scale, channels).astype(np.float32),
            "shift": rng.uniform(*self.shift, channels).astype(np.float32),
        }

    def apply(self, img: np.ndarray, gamma: np.ndarray, scale: np.ndarray, shift: np.ndarray,
              **params: Any) -> np.ndarray:
        x = img.astype(np.float32) / 255.0
        x = np.power(x, gamma) * scale + shift
        return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gamma", "scale", "shift")


def train_augmentation(kind: str = "mild", seed: int | None = None) -> A.Compose:
    """The augmentation pipeline ``kind`` (one of ``AUGMENTATIONS``) for uint8 ``(H, W, C)`` slices.

    With a ``seed`` the draws repeat from run to run (albumentations keeps its own random state).

    Example:
        >>> image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
        >>> a, b = train_augmentation("strong", seed=1), train_augmentation("strong", seed=1)
        >>> all((a(image=image)["image"] == b(image=image)["image"]).all() for _ in range(5))
        True
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; choose from {AUGMENTATIONS}")
    geometric = [
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-15, 15),
                 border_mode=cv2.BORDER_CONSTANT, p=0.5),
    ]
    if kind == "mild":
        return A.Compose([*geometric, A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.3)],
                         seed=seed)
    return A.Compose([
        *geometric,
        ChannelIntensity(p=0.8),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        A.GaussianBlur(sigma_limit=(0.3, 1.0), p=0.2),
    ], seed=seed)
