"""A set of decoded 2D slices: what every data source gives (in memory, or on disk for NIfTI datasets)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from core.data.errors import DataError
from core.data.store import SliceStore


@dataclass
class SliceSet:
    """Decoded slices: ``images (N, H, W, C)`` uint8, ``masks (N, H, W)`` class indices, in memory or on disk
    (``core.data.store.SliceStore``, read a slice at a time).

    ``volumes[i]`` names the volume (patient) slice ``i`` belongs to; ``names[i]`` identifies it.
    ``has_volumes`` is False when every slice is its own volume (a plain images/masks folder).
    """

    images: np.ndarray | SliceStore
    masks: np.ndarray | SliceStore
    volumes: list[str]
    names: list[str]
    has_volumes: bool = True

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: Sequence[int]) -> "SliceSet":
        idx = np.asarray(indices, dtype=np.int64)
        return SliceSet(  # take: a copy in memory, a lazy subset on disk (core.data.store.SliceStore)
            self.images.take(idx, axis=0), self.masks.take(idx, axis=0), [self.volumes[i] for i in idx],
            [self.names[i] for i in idx], self.has_volumes,
        )

    def select_volumes(self, volume_ids: Sequence[str]) -> "SliceSet":
        wanted = set(volume_ids)
        return self.subset([i for i, v in enumerate(self.volumes) if v in wanted])

    @property
    def areas(self) -> np.ndarray:
        """Foreground pixels per slice (kept beside the masks when they are on disk)."""
        if isinstance(self.masks, np.ndarray):
            return (self.masks > 0).reshape(len(self), -1).sum(1)
        return self.masks.areas

    @property
    def positive(self) -> np.ndarray:
        """Boolean per slice: the mask has any foreground."""
        return self.areas > 0


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(H, W, C)`` to ``(size, size, C)``: area averaging to shrink, bilinear to enlarge."""
    if image.shape[:2] == (size, size):
        return image
    shrink = image.shape[0] > size
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return resized[..., None] if resized.ndim == 2 else resized


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image and its mask (nearest neighbour) to ``size x size``; no-op for None."""
    if size is None or image.shape[:2] == (size, size):
        return image, mask
    return resize_image(image, size), cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def decode_all(
    items: Sequence[tuple[str, str, str]],
    load: Callable[[int], tuple[np.ndarray, np.ndarray]],
    size: int | None,
    has_volumes: bool = True,
    description: str = "decoding",
) -> SliceSet:
    """Decode every item once (threads; OpenCV releases the GIL) into one ``SliceSet``.

    ``items[i] = (volume, name, mask_path)``; ``load(i)`` returns ``(image, mask)`` and raises
    ``DataError``. Images and masks must agree in size; differing slice sizes need ``size``.
    """
    if not items:
        raise DataError("no slices to load")

    def one(i: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = load(i)
        if image.shape[:2] != mask.shape[:2]:
            raise DataError(
                f"{items[i][2]}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        return resize_pair(image, mask, size)

    with ThreadPoolExecutor(max_workers=4) as pool:  # the bar: for 200 slices or more, on a terminal (None)
        pairs = list(tqdm(pool.map(one, range(len(items))), total=len(items), desc=description,
                          unit="slice", leave=False, disable=len(items) < 200 or None))
    shapes = {p[0].shape for p in pairs}
    if len(shapes) > 1:
        raise DataError(f"slices have different sizes {sorted(shapes)[:3]}...; pass a size to resize them")
    return SliceSet(
        np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]),
        [it[0] for it in items], [it[1] for it in items], has_volumes,
    )
