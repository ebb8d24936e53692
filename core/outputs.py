"""Result files shared by the app's downloads and ``core.predict``: PNG, zip, NIfTI and CSV."""
from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from core.data.io import IMAGE_SUFFIXES
from core.scans import VOLUME_SUFFIXES, Scan
from core.files import atomic_write
from core.inference import label_values
from core.lesions import csv_text, slice_rows

SUFFIXES = (*VOLUME_SUFFIXES, *IMAGE_SUFFIXES)


def image_bytes(image: np.ndarray, suffix: str = ".png") -> bytes:
    """An RGB (H, W, 3) or grey (H, W) uint8 image encoded as ``suffix`` (``.png``, ``.tif``, ...).

    Example:
        >>> image_bytes(np.zeros((2, 2), np.uint8))[:8]
        b'\\x89PNG\\r\\n\\x1a\\n'
        >>> image_bytes(np.zeros((2, 2, 3), np.uint8), ".tif")[:2]
        b'II'
    """
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buffer = cv2.imencode(suffix, bgr)
    if not ok:
        raise ValueError(f"{suffix} encoding failed")
    return buffer.tobytes()


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """A zip archive holding ``{name: content}``.

    Example:
        >>> zipfile.ZipFile(io.BytesIO(zip_bytes({"a.txt": b"hi"}))).read("a.txt")
        b'hi'
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def output_stem(name: str) -> str:
    """A file-name stem for a scan's outputs; members of a zip keep the zip's name and their folders.

    Example:
        >>> output_stem("/data/head.nii.gz"), output_stem("batch.zip/dir/a.png"), output_stem("series.zip")
        ('head', 'batch_dir_a', 'series')
    """
    parts = PurePosixPath(name.replace("\\", "/")).parts
    zips = [i for i, part in enumerate(parts) if part.lower().endswith(".zip")]
    keep = parts[zips[-1] :] if zips and zips[-1] < len(parts) - 1 else parts[-1:]
    return "_".join(stem for stem in map(_strip_suffix, keep) if stem) or "scan"


def _strip_suffix(part: str) -> str:
    for suffix in SUFFIXES:
        if part.lower().endswith(suffix):
            return part[: -len(suffix)]
    return part


def unique_stems(names: list[str]) -> list[str]:
    """``output_stem`` of each name, made unique (``a``, ``a_2``, ...) so that outputs don't collide.

    Example:
        >>> unique_stems(["a.png", "b/a.png", "scans.zip/a.png"])
        ['a', 'a_2', 'scans_a']
    """
    used: set[str] = set()
    stems = []
    for name in names:
        stem = candidate = output_stem(name)
        k = 1
        while candidate in used:
            k += 1
            candidate = f"{stem}_{k}"
        used.add(candidate)
        stems.append(candidate)
    return stems


def slice_masks_zip(masks: np.ndarray, stem: str) -> bytes:
    """0/255 masks ``(S, H, W)`` as a zip of ``<stem>_slice001.png`` ..."""
    return zip_bytes({f"{stem}_slice{i + 1:03d}.png": image_bytes(m) for i, m in enumerate(masks)})


def write_outputs(scan: Scan, lesion: np.ndarray, masks: np.ndarray, out: Path, stem: str) -> list[Path]:
    """``<stem>_mask.png`` for an image; ``_mask.nii.gz``, ``_masks.zip`` and ``_slices.csv`` for a volume."""
    if not scan.is_volume:
        files = {f"{stem}_mask.png": image_bytes(masks[0])}
    else:
        files = {f"{stem}_mask.nii.gz": scan.mask_nifti_bytes(label_values(masks)),
                 f"{stem}_masks.zip": slice_masks_zip(masks, stem),
                 f"{stem}_slices.csv": csv_text(slice_rows(scan, masks > 0, lesion)).encode()}
    return [atomic_write(out / name, content) for name, content in files.items()]
