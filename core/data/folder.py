"""A plain folder: ``images/`` and ``masks/`` holding files with the same names."""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from core.data.errors import DataError
from core.data.io import IMAGE_SUFFIXES, read_image, read_mask
from core.data.slices import SliceSet, decode_all


def is_image_mask_folder(root: Path) -> bool:
    return (root / "images").is_dir() and (root / "masks").is_dir()


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in files:
                raise DataError(f"{path}: two files named {path.stem} in {folder}")
            files[path.stem] = path
    return files


def list_pairs(root: Path) -> list[tuple[Path, Path]]:
    """``(image, mask)`` pairs matched by file name (the extension may differ)."""
    root = Path(root)
    if not is_image_mask_folder(root):
        raise DataError(f"{root}: expected sub-folders images/ and masks/")
    images, masks = _by_stem(root / "images"), _by_stem(root / "masks")
    if not images:
        raise DataError(f"{root / 'images'}: no images ({', '.join(IMAGE_SUFFIXES)})")
    for stem in sorted(set(images) - set(masks)):
        raise DataError(f"{images[stem]}: no mask named {stem}.* in {root / 'masks'}")
    for stem in sorted(set(masks) - set(images)):
        raise DataError(f"{masks[stem]}: mask without an image named {stem}.* in {root / 'images'}")
    return [(images[s], masks[s]) for s in sorted(images)]


def load_folder(
    root: Path, size: int | None = None, channels: int = 3, num_classes: int = 1, volumes: Collection[str] | None = None
) -> SliceSet:
    """Decode an images/masks folder; each image is its own volume (``volumes`` selects by name)."""
    pairs = [p for p in list_pairs(root) if volumes is None or p[0].stem in volumes]
    if volumes is not None and not pairs:
        raise DataError(f"{root}: none of the {len(volumes)} requested volumes (e.g. {next(iter(volumes), '')}) are here")
    items = [(img.stem, img.stem, str(mask)) for img, mask in pairs]
    return decode_all(
        items, lambda i: (read_image(pairs[i][0], channels), read_mask(pairs[i][1], num_classes)), size,
        has_volumes=False, description="decoding images",
    )
