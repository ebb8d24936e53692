"""Several files read as one input (a zip's members, a folder's files): 2D images, an image series, or one DICOM series."""
from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from core.data.errors import DataError
from core.data.intensity import Window
from core.data.io import IMAGE_SUFFIXES
from core.scans.dicom import dicom_scan, read_dataset
from core.scans.images import read_image_scan
from core.scans.scan import Scan, check_expanded

NUMBERED = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)(?P<mask>_mask)?\.\w+$", re.IGNORECASE)  # <stem>_<n>[_mask].<ext>


def read_zip(name: str, data: bytes, channels: int, window: Window | None = None) -> list[Scan]:
    """The files of a zip, read by ``read_files``."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and not hidden(m.filename)
                   and PurePosixPath(m.filename).name.upper() != "DICOMDIR"]
    except (zipfile.BadZipFile, ValueError, NotImplementedError) as err:
        raise DataError(f"{name}: not a readable zip file ({err})") from None
    check_expanded(name, sum(m.file_size for m in members))
    if not members:
        raise DataError(f"{name}: the zip holds no files to read")
    contents = []
    for member in members:
        label = f"{name}/{member.filename}"
        try:
            contents.append((label, archive.read(member)))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as err:
            raise DataError(f"{label}: cannot be extracted ({err})") from None
    return read_files(name, contents, channels, window)


def read_folder_files(folder: Path, files: Sequence[Path], channels: int, window: Window | None = None) -> list[Scan]:
    """Files of one folder, read by ``read_files`` under the folder's name."""
    check_expanded(str(folder), sum(f.stat().st_size for f in files))
    contents = []
    for path in files:
        try:
            contents.append((str(path), path.read_bytes()))
        except OSError as err:
            raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    return read_files(str(folder), contents, channels, window)


def read_files(name: str, files: Sequence[tuple[str, bytes]], channels: int, window: Window | None = None) -> list[Scan]:
    """``(label, bytes)`` files read as one input called ``name``.

    - 2D images numbered as the slices of one volume (``<stem>_<n>.<ext>`` with one stem, as in the
      Kaggle LGG patient folders) -> one ``image series`` scan, in slice-number order; masks named
      ``<stem>_<n>_mask.<ext>`` beside their image are left out.
    - other 2D images -> one ``image`` scan each;
    - anything else -> the files of one DICOM series.
    """
    images = [(label, data) for label, data in files if label.lower().endswith(IMAGE_SUFFIXES)]
    if images and len(images) < len(files):
        raise DataError(f"{name}: mixes images ({images[0][0]}) and other files; give images or one DICOM series")
    if not images:
        return [dicom_scan(name, [(label, read_dataset(label, data)) for label, data in files], channels, window)]
    images = _without_masks(images)
    order = series_order([label for label, _ in images])
    if order is None:
        return [read_image_scan(label, data, channels, window) for label, data in images]
    scans = [read_image_scan(images[i][0], images[i][1], channels, window) for i in order]
    stacks = [s for s in scans if s.kind != "image"]
    if stacks:
        raise DataError(f"{stacks[0].name}: a TIFF of {len(stacks[0].slices)} pages among the slices of {name}")
    shapes = {s.slices.shape[1:] for s in scans}
    if len(shapes) > 1:
        raise DataError(f"{name}: its slices differ in size ({sorted(s[:2] for s in shapes)})")
    return [Scan(name, "image series", np.concatenate([s.slices for s in scans]), intensity_note=scans[0].intensity_note)]


def series_order(labels: Sequence[str]) -> list[int] | None:
    """Indices of ``labels`` in slice order if they are two or more numbered slices of one stem, else None.

    Example:
        >>> series_order(["p/a_10.tif", "p/a_9.tif", "p/a_1.tif"])
        [2, 1, 0]
        >>> series_order(["a_1.png", "b_2.png"]) is None, series_order(["a_1.png"]) is None
        (True, True)
    """
    found = [NUMBERED.match(PurePosixPath(label.replace("\\", "/")).name) for label in labels]
    if len(found) < 2 or not all(found) or len({m["stem"] for m in found}) > 1 or any(m["mask"] for m in found):
        return None
    numbers = [int(m["n"]) for m in found]
    if len(set(numbers)) < len(numbers):
        return None
    return sorted(range(len(labels)), key=numbers.__getitem__)


def _without_masks(images: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Drop ``<stem>_<n>_mask.<ext>`` files whose image ``<stem>_<n>.<ext>`` is among ``images``."""
    names = {label.lower() for label, _ in images}

    def is_mask_of_another(label: str) -> bool:
        match = NUMBERED.match(PurePosixPath(label.replace("\\", "/")).name)
        if not match or not match["mask"]:
            return False
        return label[: -len(match.group(0))].lower() + f"{match['stem']}_{match['n']}{Path(label).suffix}".lower() in names

    kept = [(label, data) for label, data in images if not is_mask_of_another(label)]
    return kept or images


def hidden(path: str) -> bool:
    """A dot-file or macOS resource fork, never a scan."""
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(path.replace("\\", "/")).parts)
