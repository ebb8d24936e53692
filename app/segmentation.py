"""Uploads for the Segment page: checked, read as scans, and segmented once per model and level."""
from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import streamlit as st

from app.checkpoints import LoadedModel, inference_device
from app.compute import inference_turn
from core.data import DataError
from core.data.intensity import Window
from core.scans import Scan, channel_groups, read_case, read_scans
from core.inference import lesion_masks, segment_images_by_level
from core.levels import Level, level_key, one_pass_levels
from core.lesions import slice_rows, volume_summary
from core.outputs import SUFFIXES
from core.postprocess import rule_of

BATCH = 8  # slices per forward pass, and per turn on the processor
TYPES = sorted({suffix.rsplit(".", 1)[-1] for suffix in SUFFIXES})  # what the readers take, as the uploader names it


@dataclass
class Result:
    """One segmented scan: lesion probability and 0/255 masks per slice, plus its output stem."""

    scan: Scan
    stem: str  # unique among the uploads, for output file names
    lesion: np.ndarray  # (S, H, W) probability of lesion
    masks: np.ndarray  # (S, H, W) 0/255

    @cached_property
    def summary(self) -> dict:
        """The scan's lesion statistics (``core.lesions.volume_summary``), worked out once."""
        return volume_summary(self.scan, self.masks > 0, self.lesion)

    @cached_property
    def rows(self) -> list[dict]:
        """One row of lesion statistics per slice (``core.lesions.slice_rows``), worked out once."""
        return slice_rows(self.scan, self.masks > 0, self.lesion)


def upload_limit_mb() -> int:
    """The per-file upload limit of ``.streamlit/config.toml`` (``server.maxUploadSize``)."""
    return int(st.get_option("server.maxUploadSize"))


def digest(data: bytes) -> str:
    """A short fingerprint of a file's bytes (cache key)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@st.cache_data(max_entries=16, show_spinner=False)
def _read(name: str, file_digest: str, channels: int, window: Window | None, axis: str, _data: bytes) -> list[Scan]:
    del file_digest  # only part of the cache key
    return read_scans(name, _data, channels, window, axis)


def read_upload(name: str, data: bytes, channels: int, window: Window | None = None,
                axis: str = "axial") -> list[Scan]:
    """An uploaded file as scans (a zip of images gives several); ``DataError`` naming the file if not usable."""
    if not data:
        raise DataError(f"{name}: the file is empty")
    limit = upload_limit_mb()
    if len(data) > limit * 2**20:
        raise DataError(f"{name}: {len(data) / 2**20:.1f} MB is over the {limit} MB limit per file")
    return _read(name, digest(data), channels, window, axis, data)  # sizes are checked before decoding


def read_uploads(files: list[tuple[str, bytes]], channels: int, windows: dict[int, Window] | None = None,
                 axis: str = "axial") -> tuple[list[Scan], list[str], list[str]]:
    """Uploads as ``(scans, cache keys, error lines)``; a case's nnU-Net channel files
    (``<case>_0000.nii.gz``, ...) make one scan for a model of several channels. ``windows``:
    a CT model's fixed intensity windows by channel; ``axis``: the plane the model slices volumes in."""
    contents: dict[str, list[bytes]] = {}
    for name, data in files:  # two uploads may share a name
        contents.setdefault(name, []).append(data)
    scans, keys, errors = [], [], []
    for group in channel_groups([name for name, _ in files], channels):
        blobs = [contents[n].pop(0) for n in group]
        try:
            found = read_case(list(zip(group, blobs)), channels, windows, axis, read=read_upload)
        except DataError as err:
            errors.append(str(err))
            continue
        key = ":".join(digest(b) for b in blobs)
        scans += found
        keys += [f"{key}:{i}" for i in range(len(found))]
    return scans, keys, errors


class ProbabilityStore:
    """Segmentation probabilities shared by every session of the app process: a thread-safe LRU.

    A cache hit costs a dictionary look-up. Two sessions asking for the same key at once compute
    it once: the second waits for the first and then reads its result. Unlike ``st.cache_data``,
    nothing is replayed, so the caller may drive its own progress bar while computing.

    Example:
        >>> store = ProbabilityStore(max_entries=1)
        >>> store.get_or_compute("a", lambda: np.zeros(2)).tolist(), store.get_or_compute("a", lambda: None).tolist()
        ([0.0, 0.0], [0.0, 0.0])
        >>> _ = store.get_or_compute("b", lambda: np.ones(1)); "a" in store
        False
    """

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def _lookup(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: Hashable, value: np.ndarray) -> None:
        """Store ``value`` under ``key``, dropping the least recently used beyond ``max_entries``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The stored value of ``key``, or ``compute()`` stored under it (once, whoever asks)."""
        if (found := self._lookup(key)) is not None:
            return found
        with self._lock:
            key_lock = self._pending.setdefault(key, threading.Lock())
        with key_lock:
            if (found := self._lookup(key)) is not None:
                return found
            try:
                value = compute()
                self.put(key, value)
            finally:
                with self._lock:
                    self._pending.pop(key, None)
        return value


@st.cache_resource
def probability_store() -> ProbabilityStore:
    """The app process's one ``ProbabilityStore``."""
    return ProbabilityStore()


def probabilities(loaded: LoadedModel, level: Level, key: str, slices: np.ndarray,
                  progress: Callable[[float], None] | None = None) -> np.ndarray:
    """``segment_images`` of a scan's slices, stored by (checkpoint version, file and scan, level).

    Changing the threshold, the opacity or the slice, or uploading the same file again (in any
    tab), reuses these probabilities; ``progress`` is only called when they are computed. The pass
    that computes the deepest head or the ensemble stores every level (``one_pass_levels``), so
    choosing another level afterwards computes nothing.
    """
    store = probability_store()

    def compute() -> np.ndarray:
        found = segment_images_by_level(
            loaded.model, loaded.meta["preprocessing"], slices, one_pass_levels(loaded.model, level),
            inference_device()[1], BATCH, progress,
            turn=inference_turn,  # sessions take turns batch by batch instead of oversubscribing the cores
            hflip=rule_of(loaded.meta)["hflip"])
        for other, probs in found.items():
            if other != level_key(level):
                store.put((*loaded.version, key, other), probs)
        return found[level_key(level)]

    return store.get_or_compute((*loaded.version, key, level_key(level)), compute)


def segment(loaded: LoadedModel, level: Level, key: str, scan: Scan, stem: str, threshold: float,
            min_component_fraction: float,
            progress: Callable[[float], None] | None = None) -> Result:
    """Segment ``scan`` (cached; with the checkpoint's test-time flip), threshold it and drop its small
    3D components (``core.postprocess``)."""
    probs = probabilities(loaded, level, key, scan.slices, progress)
    lesion, masks = lesion_masks(probs, threshold, min_component_fraction)
    return Result(scan, stem, lesion, masks)


def natural_key(name: str) -> list:
    """Sort key that orders numbers by value: ``slice_9`` before ``slice_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


COLUMNS = {"file": "file", "kind": "kind", "slices": "slices", "lesion_voxels": "lesion pixels / voxels",
           "lesion_ml": "lesion mL", "slices_with_lesion": "slices with lesion", "max_probability": "max probability"}


def results_table(results: list[Result]) -> pd.DataFrame:
    """One row per file, in natural name order, with readable headers; no mL column when no file has spacing."""
    rows = sorted((r.summary for r in results), key=lambda row: natural_key(row["file"]))
    table = pd.DataFrame(rows)[list(COLUMNS)].rename(columns=COLUMNS)
    if table["lesion mL"].isna().all():
        table = table.drop(columns="lesion mL")
    if (table["slices"] == 1).all():
        table = table.drop(columns=["slices", "slices with lesion"])
    return table
