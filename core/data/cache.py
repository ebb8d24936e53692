"""A NIfTI dataset decoded once into ``.npy`` files (one per case), so that data larger than memory trains.

The cache folder ``<cache>/<key>/`` is keyed by the dataset and the settings that shape the slices
(size, channels, CT windows, axis, intensity policy); inside, each case is rebuilt only when one of
its files changed (path, size or modification time). Training then reads slices from it one at a
time (``core.data.store.SliceStore``), so memory holds a batch, not the dataset.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.data.intensity import Window, standardize
from core.data.nifti_dataset import Case, NiftiDataset, Selection, check_shapes
from core.data.slices import SliceSet
from core.data.store import SliceStore
from core.files import atomic_file, atomic_write

FORMAT = 1
INDEX = "index.json"


def cached_nifti_dataset(dataset: NiftiDataset, cache: str | Path, size: int | None = None,
                         channels: int | None = None, volumes: Collection[str] | None = None,
                         windows: dict[int, Window] | None = None, axis: str = "axial",
                         intensity: str = "none") -> SliceSet:
    """The cases (those in ``volumes``, if given) as a ``SliceSet`` read from the cache, built where missing.

    Same slices as ``load_nifti_dataset`` followed by ``standardize`` per case, but on disk.
    """
    chosen = Selection.of(dataset, volumes, channels, windows)
    cases = chosen.cases
    settings = {"format": FORMAT, "dataset": str(dataset.root.resolve()), "size": size, "channels": chosen.channels,
                "windows": {str(k): list(w) for k, w in sorted(chosen.windows.items())}, "axis": axis,
                "intensity": intensity}
    folder = Path(cache).expanduser() / hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    index_path = folder / INDEX
    index = json.loads(index_path.read_text()) if index_path.exists() else {"settings": settings, "cases": {}}
    stale = [c for c in cases if not _fresh(index["cases"].get(c.id), c, folder)]

    if stale:
        folder.mkdir(parents=True, exist_ok=True)
    for case in tqdm(stale, desc=f"caching NIfTI cases in {folder}", unit="case", leave=False):  # one in memory
        index["cases"][case.id] = _write_case(chosen, case, folder, size, axis, intensity)
        atomic_write(index_path, json.dumps(index))  # after each case: an interrupted build resumes
    entries = [index["cases"][c.id] for c in cases]
    check_shapes(dataset.root, [tuple(e["shape"]) for e in entries])
    counts = [e["slices"] for e in entries]
    shape = entries[0]["shape"]
    return SliceSet(
        SliceStore([folder / f"{c.id}.images.npy" for c in cases], counts, shape),
        SliceStore([folder / f"{c.id}.masks.npy" for c in cases], counts, shape[:2],
                   areas=np.concatenate([np.asarray(e["areas"], np.int64) for e in entries])),
        [c.id for c, n in zip(cases, counts) for _ in range(n)],
        [f"{c.id}_{k + 1}" for c, n in zip(cases, counts) for k in range(n)],
    )


def _stamp(case: Case) -> list[list[Any]]:
    """What identifies a case's source files: path, size and modification time of each."""
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in [*case.images, case.label]]


def _fresh(entry: dict[str, Any] | None, case: Case, folder: Path) -> bool:
    return (entry is not None and entry["stamp"] == _stamp(case)
            and all((folder / f"{case.id}.{kind}.npy").exists() for kind in ("images", "masks")))


def _write_case(chosen: Selection, case: Case, folder: Path, size: int | None, axis: str,
                intensity: str) -> dict[str, Any]:
    """Decode, resize and standardize one case, write its two arrays, and describe them for the index."""
    stamp = _stamp(case)  # before reading: a file changed meanwhile is rebuilt next time
    images, masks = chosen.decode(case, size, axis)
    images = standardize(images, intensity)
    _save(folder / f"{case.id}.images.npy", images)
    _save(folder / f"{case.id}.masks.npy", masks)
    return {"stamp": stamp, "slices": len(images), "shape": list(images.shape[1:]),
            "areas": (masks > 0).reshape(len(masks), -1).sum(1).tolist()}


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as f:
        np.save(f, np.ascontiguousarray(array))
