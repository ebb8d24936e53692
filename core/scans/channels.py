"""A case's channel files (nnU-Net: ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, ...) read as one scan."""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np

from core.data.errors import DataError
from core.scans.scan import Scan

CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$", re.IGNORECASE)


def channel_groups(names: Sequence[str], channels: int) -> list[list[str]]:
    """Group nnU-Net style channel files (``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, ...) of one case.

    Only for models with several channels; every other name stays on its own, in input order. A
    group of one is an ordinary scan (a single-channel volume has its values copied into the
    model's channels, with a note); several files make one scan (``merge_channels``).

    Example:
        >>> channel_groups(["a/c1_0001.nii.gz", "a/c1_0000.nii.gz", "b.png"], channels=2)
        [['a/c1_0000.nii.gz', 'a/c1_0001.nii.gz'], ['b.png']]
        >>> channel_groups(["c1_0000.nii.gz", "b.png", "b.png"], channels=1)
        [['c1_0000.nii.gz'], ['b.png'], ['b.png']]
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for i, name in enumerate(names):
        path = PurePosixPath(name.replace("\\", "/"))
        match = CHANNEL_FILE.match(path.name) if channels > 1 else None
        key = (str(path.parent), match["case"]) if match else (str(i), "")
        groups.setdefault(key, []).append(name)
    return [sorted(g, key=lambda n: PurePosixPath(n.replace("\\", "/")).name) for g in groups.values()]


def merge_channels(scans: Sequence[Scan], channels: int) -> Scan:
    """One scan of ``channels`` channels from single-channel scans of the same grid (a case's channel files)."""
    first = scans[0]
    if len(scans) != channels:
        raise DataError(f"{first.name}: {len(scans)} channel file(s) for this case; the model takes {channels}")
    for scan in scans[1:]:
        if scan.slices.shape[:3] != first.slices.shape[:3] or not np.allclose(scan.affine, first.affine, atol=1e-3):
            raise DataError(f"{scan.name}: its grid (shape or affine) differs from {first.name}'s")
    case = CHANNEL_FILE.match(PurePosixPath(first.name.replace("\\", "/")).name)
    name = first.name.replace(PurePosixPath(first.name).name, f"{case['case']}.nii.gz") if case else first.name
    slices = np.concatenate([scan.slices[..., :1] for scan in scans], axis=-1)
    return Scan(name, first.kind, slices, first.spacing, first.affine, first.intensity_note, "", first._to_input)
