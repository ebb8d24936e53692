"""NIfTI volumes (``.nii``, ``.nii.gz``), segmented as axial slices of their closest RAS+ orientation."""
from __future__ import annotations

import gzip
import io
import zlib

import numpy as np

from core.data.errors import DataError
from core.data.intensity import Window, to_uint8
from core.data.io import to_channels
from core.data.nifti_dataset import quiet_nibabel
from core.orientation import radiological_slices, slice_spacing
from core.scans.scan import Scan, channels_note, check_expanded, check_size, intensity_note


def read_nifti(name: str, data: bytes, channels: int, window: Window | None, axis: str = "axial") -> Scan:
    """A NIfTI volume as slices along ``axis`` (``core.orientation``) of its closest RAS+ orientation."""
    import nibabel as nib

    if data[:2] == b"\x1f\x8b":
        data = _gunzip(name, data)
    with quiet_nibabel():
        try:
            image = nib.Nifti1Image.from_bytes(data)
        except Exception as err:  # nibabel raises several types for broken headers
            try:
                image = nib.Nifti2Image.from_bytes(data)
            except Exception:
                raise DataError(f"{name}: not a readable NIfTI file ({err})") from None
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise DataError(f"{name}: a {len(image.shape)}-D NIfTI of shape {image.shape}; a 3-D volume is expected")
    check_size(name, shape)
    try:
        voxels = np.asanyarray(image.dataobj).reshape(shape)
    except Exception as err:
        raise DataError(f"{name}: the NIfTI data cannot be read ({err})") from None
    note = intensity_note(voxels.dtype)
    image = nib.Nifti1Image(voxels, image.affine, image.header) if voxels.shape != image.shape else image
    canonical = nib.as_closest_canonical(image)
    start = nib.orientations.io_orientation(canonical.affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.io_orientation(image.affine))
    volume = np.asanyarray(canonical.dataobj)
    try:
        volume = to_uint8(volume, window)
    except DataError as err:
        raise DataError(f"{name}: {err}") from None
    slices = radiological_slices(volume, axis)
    zooms = canonical.header.get_zooms()[:3]
    spacing = slice_spacing(zooms, axis) if all(z > 0 for z in zooms) else None
    sample = slices[0]
    stacked = np.stack([to_channels(s, channels, name) for s in slices])
    return Scan(name, "nifti", stacked, spacing, np.asarray(image.affine, dtype=np.float64),
                note, channels_note(sample, channels), (shape, transform, axis))


def _gunzip(name: str, data: bytes) -> bytes:
    out = bytearray()
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        try:
            while chunk := f.read(1 << 20):
                out += chunk
                check_expanded(name, len(out))
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{name}: the gzip data is broken ({err})") from None
    return bytes(out)
