"""Zip archives: several 2D images (one scan each), or the files of one DICOM series."""
from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import PurePosixPath

from core.data.errors import DataError
from core.data.intensity import Window
from core.data.io import IMAGE_SUFFIXES
from core.scans.dicom import dicom_scan, read_dataset
from core.scans.images import read_image_scan
from core.scans.scan import Scan, check_expanded


def read_zip(name: str, data: bytes, channels: int, window: Window | None = None) -> list[Scan]:
    """A zip of 2D images -> one image Scan each; otherwise its files form one DICOM series."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and not _hidden(m.filename)
                   and PurePosixPath(m.filename).name.upper() != "DICOMDIR"]
    except (zipfile.BadZipFile, ValueError, NotImplementedError) as err:
        raise DataError(f"{name}: not a readable zip file ({err})") from None
    check_expanded(name, sum(m.file_size for m in members))
    if not members:
        raise DataError(f"{name}: the zip holds no files to read")
    images = [m for m in members if m.filename.lower().endswith(IMAGE_SUFFIXES)]
    if images and len(images) < len(members):
        raise DataError(f"{name}: mixes images ({images[0].filename}) and other files; zip images or one DICOM series")
    contents = []
    for member in members:
        label = f"{name}/{member.filename}"
        try:
            contents.append((label, archive.read(member)))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as err:
            raise DataError(f"{label}: cannot be extracted ({err})") from None
    if images:
        return [read_image_scan(label, content, channels, window) for label, content in contents]
    return [dicom_scan(name, [(label, read_dataset(label, content)) for label, content in contents], channels, window)]


def _hidden(path: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(path).parts)
