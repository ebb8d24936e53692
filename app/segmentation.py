"""Uploaded images for the Segment page: checked, decoded, and segmented once per model and level."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from app.checkpoints import inference_device, load_model
from core.data import DataError, decode_image
from core.inference import parse_level, segment_image

MAX_PIXELS = 25_000_000  # 25 megapixels: larger images are refused before they fill the memory


@dataclass(frozen=True)
class Result:
    """One segmented upload: its probabilities, mask (0/255) and overlay picture."""

    name: str
    stem: str  # unique among the uploads, for output file names
    probs: np.ndarray
    mask: np.ndarray
    picture: np.ndarray

    @property
    def lesion_pixels(self) -> int:
        return int((self.mask > 0).sum())

    @property
    def lesion_percent(self) -> float:
        return 100 * self.lesion_pixels / self.mask.size


def upload_limit_mb() -> int:
    """The per-file upload limit of ``.streamlit/config.toml`` (``server.maxUploadSize``)."""
    return int(st.get_option("server.maxUploadSize"))


def decode_upload(name: str, data: bytes, channels: int) -> np.ndarray:
    """An uploaded file as a uint8 ``(H, W, channels)`` RGB image; ``DataError`` naming the file if not usable."""
    if not data:
        raise DataError(f"{name}: the file is empty")
    limit = upload_limit_mb()
    if len(data) > limit * 2**20:
        raise DataError(f"{name}: {len(data) / 2**20:.1f} MB is over the {limit} MB limit per file")
    image = decode_image(data, channels, name)
    h, w = image.shape[:2]
    if h * w > MAX_PIXELS:
        raise DataError(f"{name}: {w}×{h} pixels is over the limit of {MAX_PIXELS / 1e6:.0f} megapixels")
    return image


def digest(data: bytes) -> str:
    """A short fingerprint of a file's bytes (cache key)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@st.cache_data(max_entries=64, show_spinner=False)
def probabilities(checkpoint: str, mtime: float, level: str, file_digest: str, _image: np.ndarray) -> np.ndarray:
    """``segment_image`` of an upload, cached by (checkpoint version, level, file bytes).

    Changing the threshold or the opacity reuses these probabilities.
    """
    del mtime, file_digest  # only part of the cache key
    model, meta = load_model(Path(checkpoint))
    return segment_image(model, meta["preprocessing"], _image, parse_level(level), inference_device()[1])


def unique_stems(names: list[str]) -> list[str]:
    """File stems made unique (``a``, ``a_2``, ...) so outputs of same-named uploads don't collide."""
    used: set[str] = set()
    stems = []
    for name in names:
        stem = candidate = Path(name).stem or "image"
        k = 1
        while candidate in used:
            k += 1
            candidate = f"{stem}_{k}"
        used.add(candidate)
        stems.append(candidate)
    return stems
