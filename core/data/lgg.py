"""The Kaggle LGG brain MRI layout (Buda et al. 2019): ``kaggle_3m/<patient>/<patient>_<n>[_mask].tif``."""
from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from core.data.errors import DataError
from core.data.io import read_image, read_mask
from core.data.slices import SliceSet, decode_all

SLICE = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)


def is_lgg_folder(root: Path) -> bool:
    """True if ``root`` has patient folders holding ``*_mask.tif`` files."""
    return root.is_dir() and any(root.glob("*/*_mask.tif"))


def list_lgg(root: Path) -> list[tuple[str, int, Path, Path]]:
    """``(patient, slice number, image, mask)`` for every slice, sorted; ``DataError`` on a gap.

    Each image ``<patient>_<n>.tif`` must have a mask ``<patient>_<n>_mask.tif`` and vice versa.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images, masks = {}, {}
        for path in folder.iterdir():
            m = SLICE.match(path.name)
            if m:
                (masks if m["mask"] else images)[int(m["n"])] = path
        for n in sorted(set(images) | set(masks)):
            if n not in masks:
                raise DataError(f"{images[n]}: no mask (expected {images[n].stem}_mask{images[n].suffix})")
            if n not in images:
                raise DataError(f"{masks[n]}: mask without an image")
            found.append((folder.name, n, images[n], masks[n]))
    if not found:
        raise DataError(f"{root}: no <patient>/<patient>_<n>.tif slices with _mask.tif masks found")
    return found


def load_lgg(root: Path, size: int | None = None, volumes: Collection[str] | None = None) -> SliceSet:
    """Decode LGG slices (RGB = pre-contrast, FLAIR, post-contrast) and masks into a ``SliceSet``.

    ``volumes`` limits decoding to those patients.
    """
    entries = [e for e in list_lgg(root) if volumes is None or e[0] in volumes]
    if volumes is not None and not entries:
        raise DataError(f"{root}: none of the {len(volumes)} requested volumes (e.g. {next(iter(volumes), '')}) are here")
    items = [(patient, f"{patient}_{n}", str(mask)) for patient, n, _, mask in entries]
    return decode_all(
        items, lambda i: (read_image(entries[i][2], 3), read_mask(entries[i][3])), size,
        description="decoding LGG slices",
    )
