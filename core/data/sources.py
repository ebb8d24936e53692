"""One entry point for every data source, and the patient-level split."""
from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from core.data.cache import cached_nifti_dataset
from core.data.errors import DataError
from core.data.folder import is_image_mask_folder, list_pairs, load_folder
from core.data.io import read_mask
from core.data.lgg import is_lgg_folder, list_lgg, load_lgg
from core.data.intensity import Window, standardize_volumes
from core.data.nifti_dataset import (NiftiDataset, ct_windows, is_nifti_dataset, label_slices, load_nifti_dataset,
                                     read_dataset)
from core.data.resolution import input_size_for
from core.data.slices import SliceSet
from core.data.synthetic import make_synthetic

SYNTHETIC = "synthetic"


def load_source(
    source: str | Path, size: int | None = None, channels: int = 3, num_classes: int = 1,
    volumes: Collection[str] | None = None, intensity: str = "none", windows: dict[int, Window] | None = None,
    axis: str = "axial", cache: str | Path | None = None,
) -> SliceSet:
    """Load ``"synthetic"``, a ``kaggle_3m`` folder, an ``images/``+``masks/`` folder, or a NIfTI dataset
    (nnU-Net v2 raw or MSD layout, ``core.data.nifti_dataset``).

    ``size`` resizes every slice to ``size x size`` (None keeps the files' size); ``volumes``
    decodes only those volumes (patients), e.g. a checkpoint's validation split; ``intensity``
    is the policy of ``core.data.intensity`` applied to each volume; ``windows`` fix the intensity
    range of channels (a CT model's; default: a NIfTI dataset's own, see ``ct_windows``); ``axis``
    slices NIfTI volumes along another plane (``core.orientation``; other layouts are 2D already).
    ``cache`` keeps a NIfTI dataset's slices on disk there (``core.data.cache``), for data larger than memory.
    """
    dataset = _nifti_dataset(source)
    if dataset and dataset.num_classes != num_classes:
        raise DataError(f"{dataset.root / 'dataset.json'}: its labels make {dataset.num_classes} classes, "
                        f"not {num_classes}")
    if dataset and cache is not None:
        return cached_nifti_dataset(dataset, cache, size, channels, volumes, windows, axis, intensity)
    if dataset:
        slices = load_nifti_dataset(dataset, size, channels, volumes, windows, axis)
    else:
        slices = _load(source, size, channels, num_classes, volumes, axis)
    slices.images = standardize_volumes(slices.images, slices.volumes, intensity)
    return slices


def input_size(source: str | Path, num_classes: int = 1, sample: int = 400, axis: str = "axial") -> int:
    """The training size that follows the data (``core.data.resolution``), from up to ``sample`` of its masks.

    The synthetic demo keeps its 128 px.
    """
    if str(source) == SYNTHETIC:
        return 128
    root = data_folder(source)
    if is_nifti_dataset(root):
        return input_size_for(label_slices(root, sample, axis), max(num_classes, read_dataset(root).num_classes))
    files = [mask for _, mask in list_pairs(root)] if is_image_mask_folder(root) else [m for *_, m in list_lgg(root)]
    chosen = files[:: max(1, -(-len(files) // sample))]
    return input_size_for([read_mask(f, num_classes) for f in chosen], num_classes)


def label_names(source: str | Path) -> list[str] | None:
    """The class names by value (background first) where the data names them (a NIfTI dataset), else None."""
    dataset = _nifti_dataset(source)
    return list(dataset.labels) if dataset else None


def intensity_windows(source: str | Path) -> dict[int, Window]:
    """Fixed intensity windows by channel: a NIfTI dataset's CT channels (``ct_windows``); none otherwise."""
    dataset = _nifti_dataset(source)
    return ct_windows(dataset) if dataset else {}


def channels_and_classes(source: str | Path) -> tuple[int, int]:
    """What a model for ``source`` takes and gives: ``(input channels, num_classes)``.

    A NIfTI dataset says so in its ``dataset.json``; images are RGB with binary masks.
    """
    dataset = _nifti_dataset(source)
    return (len(dataset.channels), dataset.num_classes) if dataset else (3, 1)


def _nifti_dataset(source: str | Path) -> NiftiDataset | None:
    """``source``'s ``dataset.json`` description where it is a NIfTI dataset, else None."""
    if str(source) == SYNTHETIC or not is_nifti_dataset(Path(source).expanduser()):
        return None
    return read_dataset(Path(source).expanduser())


def _load(source: str | Path, size: int | None, channels: int, num_classes: int,
          volumes: Collection[str] | None, axis: str) -> SliceSet:
    """The 2D layouts (and the synthetic demo), decoded into memory."""
    if str(source) == SYNTHETIC:
        synthetic = make_synthetic(size=size or 128)
        return synthetic if volumes is None else synthetic.select_volumes(volumes)
    root = data_folder(source)
    if axis != "axial":
        raise DataError(f"{root}: --axis {axis} slices NIfTI volumes; this data is 2D slices already")
    if is_image_mask_folder(root):
        return load_folder(root, size, channels, num_classes, volumes)
    if channels != 3 or num_classes != 1:
        raise DataError(f"{root}: LGG slices have 3 channels and binary masks")
    return load_lgg(root, size, volumes)


def data_folder(source: str | Path) -> Path:
    """``source`` as a folder in one of the layouts ``load_source`` reads; ``DataError`` otherwise."""
    root = Path(source).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if is_nifti_dataset(root) or is_image_mask_folder(root) or is_lgg_folder(root):
        return root
    raise DataError(
        f"{root}: not a data folder. Expected images/ and masks/ sub-folders with same-named files, "
        "the Kaggle LGG layout <patient>/<patient>_<n>.tif with <patient>_<n>_mask.tif, or a NIfTI "
        "dataset with a dataset.json (nnU-Net v2 raw or Medical Segmentation Decathlon layout)"
    )


def split_volumes(
    volumes: list[str], val_fraction: float, seed: int, folds: int = 0, fold: int = 0,
) -> tuple[list[str], list[str]]:
    """Split volume (patient) ids into sorted ``(train, val)`` lists; no volume is in both.

    With ``folds=K`` the volumes are dealt, in a seeded random order, into K folds of (nearly)
    equal size and fold ``fold`` (0..K-1) is the validation set: K runs cross-validate over every
    volume. ``val_fraction=0`` (without folds) trains on every volume and validates on none.

    Example:
        >>> train, val = split_volumes([f"p{i}" for i in range(10)], 0.2, seed=0)
        >>> len(train), len(val), set(train) & set(val)
        (8, 2, set())
        >>> vals = [split_volumes([f"p{i}" for i in range(10)], 0.2, 0, folds=3, fold=k)[1] for k in range(3)]
        >>> [len(v) for v in vals], sorted(sum(vals, [])) == sorted(f"p{i}" for i in range(10))
        ([4, 3, 3], True)
    """
    ids = sorted(set(volumes))
    if folds:
        if not 0 <= fold < folds:
            raise ValueError(f"fold must be between 0 and {folds - 1}, got {fold}")
        if len(ids) < folds:
            raise DataError(f"{folds} folds need at least {folds} volumes, found {len(ids)}")
        order = np.random.default_rng(seed).permutation(len(ids))
        val = sorted(ids[i] for i in order[fold::folds])
        return sorted(set(ids) - set(val)), val
    if val_fraction == 0:
        return ids, []
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if len(ids) < 2:
        raise DataError(f"need at least 2 volumes to split into train and validation, found {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
    val = sorted(ids[i] for i in order[:n_val])
    return sorted(set(ids) - set(val)), val
