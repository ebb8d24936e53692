"""Scans as users hold them: 2D images, multi-page TIFF stacks, DICOM files and series, NIfTI volumes.

``read_scan(name, data, channels)`` turns the bytes of one upload or file into a ``Scan``: the
slices the model takes (uint8, ``(S, H, W, channels)``) plus the geometry needed to report
volumes in mL and to write the mask back as NIfTI aligned with the input.

Intensity mapping (documented for users in docs/data.md): uint8 data is used as is (the LGG
TIFFs are 8-bit); 16-bit, signed or float data (after the DICOM rescale slope/intercept) goes
through ``core.data.intensity.to_uint8``, a 0.5th..99.5th percentile window over the whole scan.

Channels: a model trained on 3-channel LGG slices (pre-contrast, FLAIR, post-contrast) gets a
single-channel scan with its grey values copied into all three channels (``Scan.channels_note``
says so); a FLAIR series gives the closest match to training.

Orientation: NIfTI volumes are shown and segmented as axial slices of the closest RAS+ orientation
(``nibabel.as_closest_canonical``) in the radiological convention of clinical viewers: anterior at
the top of the image and the patient's right on the image's left (as if looking up from the feet),
slices ordered from inferior to superior. ``Scan.mask_volume`` puts a mask back into the input's own
voxel order, so the written mask has the input's shape and affine. DICOM slices are shown as
stored, which for the usual axial series (``ImageOrientationPatient`` 1,0,0,0,1,0) is the same
convention.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from core.data.errors import DataError
from core.data.intensity import Window
from core.data.io import IMAGE_SUFFIXES
from core.scans.archive import hidden, read_folder_files, read_zip
from core.scans.channels import CHANNEL_FILE, channel_groups, merge_channels
from core.scans.dicom import read_dicom
from core.scans.images import read_image_scan
from core.scans.nifti import read_nifti
from core.scans.scan import MAX_VOXELS, Scan

Reader = Callable[[str, bytes, int, "Window | None"], Scan]


def _one_series(name: str, data: bytes, channels: int, window: Window | None = None) -> Scan:
    scans = read_zip(name, data, channels, window)
    if len(scans) != 1:
        raise DataError(f"{name}: holds {len(scans)} images, not one DICOM series")
    return scans[0]


READERS: dict[str, Reader] = {  # suffix -> reader, longest suffix first; anything else is read as an image
    ".nii.gz": read_nifti, ".nii": read_nifti, ".dcm": read_dicom, ".zip": _one_series,
}
VOLUME_SUFFIXES = tuple(READERS)  # besides IMAGE_SUFFIXES


def read_scans(name: str, data: bytes, channels: int = 3, window: Window | None = None,
               axis: str = "axial") -> list[Scan]:
    """Like ``read_scan``, but a zip of 2D images (PNG, JPG, TIFF, BMP) gives one ``Scan`` per image."""
    if name.lower().endswith(".zip") and data and axis == "axial":
        return read_zip(name, data, channels, window)
    return [read_scan(name, data, channels, window, axis)]


def read_scan(name: str, data: bytes, channels: int = 3, window: Window | None = None, axis: str = "axial") -> Scan:
    """Decode one file (by its name's suffix, ``READERS``, and content) into a ``Scan``; ``DataError`` naming
    it if not usable. A ``.zip`` must hold one DICOM series here; see ``read_scans`` for a zip of images.
    ``window``: a fixed intensity window (a CT model's) instead of the scan's own percentiles.
    ``axis``: the plane a model trained with ``--axis`` slices NIfTI volumes in.
    """
    if not data:
        raise DataError(f"{name}: the file is empty")
    lower = name.lower()
    reader = next((r for suffix, r in READERS.items() if lower.endswith(suffix)), None)
    if reader is None and data[128:132] == b"DICM":  # a DICOM file without its suffix
        reader = read_dicom
    if axis != "axial":
        if reader is not read_nifti:
            raise DataError(f"{name}: this model segments {axis} slices of NIfTI volumes; give it a .nii or .nii.gz")
        return read_nifti(name, data, channels, window, axis)
    return (reader or read_image_scan)(name, data, channels, window)


def read_case(files: Sequence[tuple[str, bytes]], channels: int, windows: dict[int, Window] | None = None,
              axis: str = "axial", read: Callable[..., list[Scan]] | None = None) -> list[Scan]:
    """One group of ``channel_groups``: several files are a case's channel files, merged into one scan;
    one file is read as it is. ``windows`` fix channel k's intensity window (CT); ``read(name, data,
    channels, window, axis)`` reads one file (default ``read_scans``; the app passes its cached reader)."""
    read, windows = read or read_scans, windows or {}
    if len(files) > 1:
        return [merge_channels([read(name, data, 1, windows.get(k), axis)[0] for k, (name, data) in enumerate(files)],
                               channels)]
    (name, data), = files
    return read(name, data, channels, windows.get(0), axis)


def read_folder(folder: Path, channels: int = 3, windows: dict[int, Window] | None = None,
                axis: str = "axial", depth: int = 3) -> list[Scan]:
    """The scans of a folder, as ``core.predict`` reads a folder argument.

    Its 2D images or DICOM files are read together (``read_files``: the numbered slices of a Kaggle
    LGG patient folder are one volume, DICOM files one series); each NIfTI volume or zip is read on
    its own, a case's nnU-Net channel files together. Other files (CSV, text) are skipped. A folder
    without such files stands for its subfolders (``depth`` levels down), each read the same way:
    ``kaggle_3m/`` gives one volume per patient.
    """
    name = str(folder) if folder.name not in ("", ".", "..") else str(folder.resolve())
    try:
        entries = sorted(p for p in folder.iterdir() if not hidden(p.name))
    except OSError as err:
        raise DataError(f"{folder}: cannot be read ({err.strerror})") from None
    files = [p for p in entries if p.is_file() and p.name.upper() != "DICOMDIR"]
    volumes = [p for p in files if p.name.lower().endswith(VOLUME_SUFFIXES) and p.suffix.lower() != ".dcm"]
    slices = [p for p in files if p.name.lower().endswith((*IMAGE_SUFFIXES, ".dcm")) or (not p.suffix and _is_dicom(p))]
    if not volumes and not slices:
        subfolders = [p for p in entries if p.is_dir()]
        if not subfolders or depth == 0:
            raise DataError(f"{folder}: holds no images, DICOM, NIfTI or zip files to segment")
        return [scan for sub in subfolders for scan in read_folder(sub, channels, windows, axis, depth - 1)]
    if slices and axis != "axial":
        raise DataError(f"{slices[0]}: this model segments {axis} slices of NIfTI volumes; give it a .nii or .nii.gz")
    scans = read_folder_files(Path(name), slices, channels, (windows or {}).get(0)) if slices else []
    for group in channel_groups([str(p) for p in volumes], channels):
        scans += read_case([(n, Path(n).read_bytes()) for n in group], channels, windows, axis)
    return scans


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


__all__ = [
    "CHANNEL_FILE", "MAX_VOXELS", "READERS", "VOLUME_SUFFIXES", "Scan", "channel_groups", "merge_channels",
    "read_case", "read_folder", "read_scan", "read_scans",
]
