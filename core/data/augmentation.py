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


class ChannelFill(A.ImageOnlyTransform):
    """A missing sequence: the other channels, each with probability 1/2 (at least one), become copies of
    channel ``source``.

    The Kaggle LGG set fills the sequences a patient lacks with FLAIR (channel 1): 8 of its 74 patients
    have copies in place of the pre- or post-contrast channel, and a model that never saw one reads
    such a patient badly.

    Example:
        >>> image = np.stack([np.full((2, 2), v, np.uint8) for v in (10, 20, 30)], axis=-1)
        >>> out = ChannelFill(source=1, p=1.0)(image=image)["image"]
        >>> int(out[0, 0, 1]), sorted({int(out[0, 0, 0]), int(out[0, 0, 2])} - {10, 30}), bool((out == image).all())
        (20, [20], False)
    """

    def __init__(self, source: int = 1, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.source = source

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        channels = data["image"].shape[-1] if data["image"].ndim == 3 else 1
        if channels < 2 or self.source >= channels:  # a one-channel slice has nothing to fill
            return {"filled": []}
        others = [c for c in range(channels) if c != self.source]
        filled = [c for c in others if self.random_generator.random() < 0.5]
        if not filled:
            filled = [others[self.random_generator.integers(len(others))]]
        return {"filled": filled}

    def apply(self, img: np.ndarray, filled: list[int], **params: Any) -> np.ndarray:
        if not filled:
            return img
        out = img.copy()
        out[..., filled] = img[..., self.source:self.source + 1]
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("source",)


def train_augmentation(kind: str = "mild", seed: int | None = None, channel_fill: float = 0.0,
                       fill_from: int = 1) -> A.Compose:
    """The augmentation pipeline ``kind`` (one of ``AUGMENTATIONS``) for uint8 ``(H, W, C)`` slices, with
    ``ChannelFill(fill_from)`` applied to a ``channel_fill`` share of them (after the intensity changes, so
    the copies are exact, as in the data).

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
    fill = [ChannelFill(fill_from, p=channel_fill)] if channel_fill > 0 else []
    if kind == "mild":
        return A.Compose([*geometric, A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.3),
                          *fill], seed=seed)
    return A.Compose([
        *geometric,
        ChannelIntensity(p=0.8),
        *fill,
        A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        A.GaussianBlur(sigma_limit=(0.3, 1.0), p=0.2),
    ], seed=seed)
