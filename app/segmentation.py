"""Uploads for the Segment page: checked, read as scans, and segmented once per model and level."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from app.checkpoints import inference_device, load_model
from core.data import DataError
from core.data.scans import Scan, read_scans
from core.inference import lesion_masks, parse_level, segment_images
from core.lesions import slice_rows, volume_summary

TYPES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm", "nii", "gz", "zip"]


@dataclass
class Result:
    """One segmented scan: lesion probability and 0/255 masks per slice, plus its output stem."""

    scan: Scan
    stem: str  # unique among the uploads, for output file names
    lesion: np.ndarray  # (S, H, W) probability of lesion
    masks: np.ndarray  # (S, H, W) 0/255

    @property
    def summary(self) -> dict:
        return volume_summary(self.scan, self.masks > 0, self.lesion)

    @property
    def rows(self) -> list[dict]:
        return slice_rows(self.scan, self.masks > 0, self.lesion)


def upload_limit_mb() -> int:
    """The per-file upload limit of ``.streamlit/config.toml`` (``server.maxUploadSize``)."""
    return int(st.get_option("server.maxUploadSize"))


def digest(data: bytes) -> str:
    """A short fingerprint of a file's bytes (cache key)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@st.cache_data(max_entries=16, show_spinner=False)
def _read(name: str, file_digest: str, channels: int, _data: bytes) -> list[Scan]:
    del file_digest  # only part of the cache key
    return read_scans(name, _data, channels)


def read_upload(name: str, data: bytes, channels: int) -> list[Scan]:
    """An uploaded file as scans (a zip of images gives several); ``DataError`` naming the file if not usable."""
    if not data:
        raise DataError(f"{name}: the file is empty")
    limit = upload_limit_mb()
    if len(data) > limit * 2**20:
        raise DataError(f"{name}: {len(data) / 2**20:.1f} MB is over the {limit} MB limit per file")
    return _read(name, digest(data), channels, data)  # pixel and voxel limits are checked before decoding


@st.cache_data(max_entries=32, show_spinner=False)
def probabilities(checkpoint: str, mtime: float, level: str, key: str, _slices: np.ndarray,
                  _progress: Callable[[float], None] | None = None) -> np.ndarray:
    """``segment_images`` of a scan's slices, cached by (checkpoint version, level, file and scan).

    Changing the threshold, the opacity or the slice reuses these probabilities.
    """
    del mtime, key  # only part of the cache key
    model, meta = load_model(Path(checkpoint))
    return segment_images(model, meta["preprocessing"], _slices, parse_level(level), inference_device()[1],
                          progress=_progress)


def segment(checkpoint: Path, level: str, key: str, scan: Scan, stem: str, threshold: float,
            progress: Callable[[float], None] | None = None) -> Result:
    """Segment ``scan`` (cached) and threshold it."""
    probs = probabilities(str(checkpoint), checkpoint.stat().st_mtime, level, key, scan.slices, progress)
    lesion, masks = lesion_masks(probs, threshold)
    return Result(scan, stem, lesion, masks)
