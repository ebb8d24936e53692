"""DICOM files and series: slices ordered along the slice normal, with spacing and affine."""
from __future__ import annotations

import io

import numpy as np

from core.data.errors import DataError
from core.data.intensity import Window, to_uint8
from core.data.io import to_channels
from core.scans.scan import Scan, channels_note, check_size, intensity_note


def read_dicom(name: str, data: bytes, channels: int, window: Window | None = None) -> Scan:
    """One DICOM file (one slice, or a multi-frame volume)."""
    return dicom_scan(name, [(name, read_dataset(name, data))], channels, window)


def read_dataset(name: str, data: bytes):  # noqa: ANN202 (pydicom Dataset)
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" not in ds:
            raise DataError(f"{name}: a DICOM file without pixel data")
        check_size(name, (int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)))
        ds.pixel_array  # decode now, so that a broken file is named here  # noqa: B018
    except DataError:
        raise
    except InvalidDicomError:
        raise DataError(f"{name}: not a DICOM file") from None
    except Exception as err:  # truncated data, unsupported compression, missing attributes
        raise DataError(f"{name}: the DICOM pixel data cannot be read ({type(err).__name__}: {err})") from None
    return ds


def dicom_scan(name: str, datasets: list, channels: int, window: Window | None = None) -> Scan:
    """One or more DICOM datasets -> slices ordered along the slice normal, with spacing and affine."""
    from pydicom.pixels import apply_modality_lut

    frames, geometry = [], []
    for label, ds in datasets:
        try:
            pixels = apply_modality_lut(ds.pixel_array, ds) if "RescaleSlope" in ds or "ModalityLUTSequence" in ds else ds.pixel_array
            colour = ds.get("SamplesPerPixel", 1) == 3
        except Exception as err:  # a corrupt rescale or LUT element
            raise DataError(f"{label}: the DICOM intensity mapping cannot be read ({type(err).__name__}: {err})") from None
        stack = pixels if (pixels.ndim == 4 or (pixels.ndim == 3 and not colour)) else pixels[None]
        frames.extend(stack)
        geometry.extend([(label, ds)] * len(stack))
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise DataError(f"{name}: the series' images differ in size ({sorted(shapes)})")
    try:
        order, spacing, affine = _dicom_geometry(geometry)
    except Exception as err:  # corrupt position, orientation or spacing values
        raise DataError(f"{name}: the DICOM slice geometry cannot be read ({type(err).__name__}: {err})") from None
    volume = np.stack([frames[i] for i in order])
    try:
        volume = to_uint8(volume, window)
    except DataError as err:
        raise DataError(f"{name}: {err}") from None
    slices = np.stack([to_channels(s, channels, name) for s in volume])
    kind = "dicom series" if len(datasets) > 1 else "dicom"
    return Scan(name, kind, slices, spacing, affine, intensity_note(frames[0].dtype), channels_note(frames[0], channels))


def _dicom_geometry(geometry: list) -> tuple[list[int], tuple[float, float, float] | None, np.ndarray | None]:
    """Slice order (by position along the normal, else InstanceNumber, else file order), spacing, affine."""
    first = geometry[0][1]
    pixel = [float(v) for v in first.get("PixelSpacing", [])] or None
    orientation = [float(v) for v in first.get("ImageOrientationPatient", [])]
    positions = [ds.get("ImagePositionPatient") for _, ds in geometry]
    if len(orientation) == 6 and all(p is not None and len(p) == 3 for p in positions):
        row_cos, col_cos = np.array(orientation[:3]), np.array(orientation[3:])
        normal = np.cross(row_cos, col_cos)
        points = np.array([[float(v) for v in p] for p in positions])
        order = sorted(range(len(points)), key=lambda i: float(points[i] @ normal))
        steps = np.diff([float(points[i] @ normal) for i in order])
        between = float(np.median(np.abs(steps))) if len(steps) else None
    else:
        numbers = [ds.get("InstanceNumber") for _, ds in geometry]
        order = sorted(range(len(geometry)), key=lambda i: (numbers[i] is None, numbers[i] or 0, i))
        row_cos = col_cos = normal = points = None
        between = None
    thickness = between or _positive(first.get("SpacingBetweenSlices")) or _positive(first.get("SliceThickness"))
    spacing = (pixel[0], pixel[1], thickness) if pixel and thickness else None
    affine = None
    if spacing and row_cos is not None:
        lps = np.eye(4)
        lps[:3, 0] = row_cos * spacing[1]
        lps[:3, 1] = col_cos * spacing[0]
        lps[:3, 2] = normal * spacing[2]
        lps[:3, 3] = points[order[0]]
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM LPS -> NIfTI RAS
    return order, spacing, affine


def _positive(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
