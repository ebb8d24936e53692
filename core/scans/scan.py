"""``Scan``: the slices of one input file ready for the model, with the geometry to report and write results."""
from __future__ import annotations

import gzip
from dataclasses import dataclass, field

import numpy as np

from core.data.errors import DataError
from core.orientation import from_slices

MAX_VOXELS = 200_000_000  # about 200 MB as uint8: bigger volumes are refused before decoding
MAX_DECOMPRESSED = 1 << 30  # a .nii.gz or zip may expand to at most 1 GiB


@dataclass
class Scan:
    """Slices ready for the model and the geometry to report and write results."""

    name: str
    kind: str  # "image", "tiff stack", "dicom", "dicom series" or "nifti"
    slices: np.ndarray  # uint8 (S, H, W, C)
    spacing: tuple[float, float, float] | None = None  # mm: (row, column, slice)
    affine: np.ndarray | None = None  # voxel -> RAS mm of the input's own voxel grid (NIfTI output)
    intensity_note: str = "8-bit values used as is"
    channels_note: str = ""
    _to_input: tuple = field(default=(), repr=False)  # NIfTI: (shape, orientation transform, slicing axis)

    @property
    def is_volume(self) -> bool:
        return self.kind != "image"

    @property
    def voxel_ml(self) -> float | None:
        """Millilitres per voxel, or None where the spacing is unknown."""
        return None if self.spacing is None else float(np.prod(self.spacing)) / 1000

    def mask_volume(self, masks: np.ndarray) -> np.ndarray:
        """``(S, H, W)`` masks in slice order -> a volume in the input's voxel order (NIfTI shape)."""
        if masks.shape != self.slices.shape[:3]:
            raise ValueError(f"{self.name}: masks of shape {masks.shape} for slices {self.slices.shape[:3]}")
        if self.kind != "nifti":
            return np.ascontiguousarray(masks.transpose(2, 1, 0))  # (S, rows, cols) -> (cols, rows, S): x, y, z
        import nibabel as nib

        shape, transform, axis = self._to_input
        canonical = from_slices(masks, axis)  # (S, rows, cols) -> the RAS+ volume
        return np.ascontiguousarray(nib.orientations.apply_orientation(canonical, transform)).reshape(shape)

    def mask_nifti_bytes(self, masks: np.ndarray) -> bytes:
        """The masks as a gzipped NIfTI-1 file (uint8) with the input's affine (or one from the spacing)."""
        affine = self.affine if self.affine is not None else np.diag([*(self._xyz_spacing()), 1.0])
        return nifti_bytes(self.mask_volume(masks), affine)

    def _xyz_spacing(self) -> tuple[float, float, float]:
        if self.spacing is None:
            return 1.0, 1.0, 1.0
        row, col, sl = self.spacing
        return col, row, sl


def intensity_note(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "8-bit values used as is"
    return f"{dtype} values windowed to their 0.5-99.5th percentile and scaled to 0-255"


def channels_note(sample: np.ndarray, channels: int) -> str:
    if channels == 3 and (sample.ndim == 2 or sample.shape[-1] == 1):
        return ("single-channel scan: its grey values are copied into all three input channels "
                "(pre-contrast, FLAIR, post-contrast); a FLAIR series matches the training data best")
    return ""


def nifti_bytes(volume: np.ndarray, affine: np.ndarray) -> bytes:
    """``volume`` as a gzipped NIfTI-1 file (uint8, millimetres) with ``affine``."""
    import nibabel as nib

    image = nib.Nifti1Image(volume.astype(np.uint8), affine)
    image.header.set_xyzt_units("mm")
    return gzip.compress(image.to_bytes(), compresslevel=6)


def check_expanded(name: str, size: int) -> None:
    """``DataError`` once a compressed input (gzip, zip) expands past ``MAX_DECOMPRESSED`` bytes."""
    if size > MAX_DECOMPRESSED:
        raise DataError(f"{name}: expands to over {MAX_DECOMPRESSED >> 20} MB; refused")


def check_size(name: str, shape: tuple[int, ...]) -> None:
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels == 0:
        raise DataError(f"{name}: the scan has no voxels (shape {shape})")
    if voxels > MAX_VOXELS:
        raise DataError(f"{name}: {voxels:,} voxels (shape {shape}) is over the limit of {MAX_VOXELS:,}")
