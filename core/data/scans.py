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

import gzip
import io
import logging
import zipfile
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import cv2
import numpy as np

from core.data.errors import DataError
from core.data.intensity import Window, to_uint8
from core.data.io import IMAGE_SUFFIXES, decode_image, image_header, to_channels

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".zip")  # besides IMAGE_SUFFIXES; .nii.gz before .nii
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
    _to_input: tuple = field(default=(), repr=False)  # NIfTI: (shape, orientation transform)

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

        shape, transform = self._to_input
        canonical = masks.transpose(2, 1, 0)[::-1, ::-1, :]  # undo radiological_slices: (S, rows, cols) -> RAS+
        return np.ascontiguousarray(nib.orientations.apply_orientation(canonical, transform)).reshape(shape)

    def mask_nifti_bytes(self, masks: np.ndarray) -> bytes:
        """The masks as a gzipped NIfTI-1 file (uint8) with the input's affine (or one from the spacing)."""
        import nibabel as nib

        affine = self.affine if self.affine is not None else np.diag([*(self._xyz_spacing()), 1.0])
        image = nib.Nifti1Image(self.mask_volume(masks).astype(np.uint8), affine)
        image.header.set_xyzt_units("mm")
        return gzip.compress(image.to_bytes(), compresslevel=6)

    def _xyz_spacing(self) -> tuple[float, float, float]:
        if self.spacing is None:
            return 1.0, 1.0, 1.0
        row, col, sl = self.spacing
        return col, row, sl


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


def read_scans(name: str, data: bytes, channels: int = 3, window: Window | None = None) -> list[Scan]:
    """Like ``read_scan``, but a zip of 2D images (PNG, JPG, TIFF, BMP) gives one ``Scan`` per image."""
    if name.lower().endswith(".zip") and data:
        return _read_zip(name, data, channels, window)
    return [read_scan(name, data, channels, window)]


def read_scan(name: str, data: bytes, channels: int = 3, window: Window | None = None) -> Scan:
    """Decode one file (by its name's suffix and content) into a ``Scan``; ``DataError`` naming it if not usable.

    A ``.zip`` must hold one DICOM series here; see ``read_scans`` for a zip of images.
    """
    if not data:
        raise DataError(f"{name}: the file is empty")
    lower = name.lower()
    if lower.endswith((".nii", ".nii.gz")):
        return _read_nifti(name, data, channels, window)
    if lower.endswith(".zip"):
        scans = _read_zip(name, data, channels, window)
        if len(scans) != 1:
            raise DataError(f"{name}: holds {len(scans)} images, not one DICOM series")
        return scans[0]
    if lower.endswith(".dcm") or data[128:132] == b"DICM":
        return _dicom_scan(name, [(name, _read_dicom(name, data))], channels, window)
    header = image_header(data, name)  # checked once, for the stack and the single-image path alike
    if lower.endswith((".tif", ".tiff")) and header[2] > 1:
        pages = _tiff_pages(name, data, header)
        volume = to_uint8(np.stack(pages), window)
        slices = np.stack([to_channels(p, channels, name) for p in volume])
        return Scan(name, "tiff stack", slices, intensity_note=_note(pages[0].dtype),
                    channels_note=_channels_note(pages[0], channels))
    image = decode_image(data, channels, name, header_checked=True)
    return Scan(name, "image", image[None], channels_note="")


# -- helpers -------------------------------------------------------------------------------------
def _note(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return "8-bit values used as is"
    return f"{dtype} values windowed to their 0.5-99.5th percentile and scaled to 0-255"


def _channels_note(sample: np.ndarray, channels: int) -> str:
    if channels == 3 and (sample.ndim == 2 or sample.shape[-1] == 1):
        return ("single-channel scan: its grey values are copied into all three input channels "
                "(pre-contrast, FLAIR, post-contrast); a FLAIR series matches the training data best")
    return ""


def _check_size(name: str, shape: tuple[int, ...]) -> None:
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels == 0:
        raise DataError(f"{name}: the scan has no voxels (shape {shape})")
    if voxels > MAX_VOXELS:
        raise DataError(f"{name}: {voxels:,} voxels (shape {shape}) is over the limit of {MAX_VOXELS:,}")


def _tiff_pages(name: str, data: bytes, header: tuple[int, int, int]) -> list[np.ndarray]:
    """The pages of a TIFF stack whose ``image_header`` (which checks every page's size) is ``header``."""
    width, height, count = header
    _check_size(name, (count, height, width))
    try:
        ok, pages = cv2.imdecodemulti(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # libtiff rejects some corrupt headers by raising
        ok, pages = False, []
    if not ok or not pages:
        raise DataError(f"{name}: not a readable TIFF")
    shapes = {p.shape for p in pages}
    if len(shapes) > 1:
        raise DataError(f"{name}: the TIFF's pages differ in size ({sorted(shapes)}); a stack needs equal pages")
    _check_size(name, (len(pages), *pages[0].shape))
    return [cv2.cvtColor(p[..., :3], cv2.COLOR_BGR2RGB) if p.ndim == 3 and p.shape[2] >= 3 else p for p in pages]


def _read_nifti(name: str, data: bytes, channels: int, window: Window | None) -> Scan:
    import nibabel as nib

    if data[:2] == b"\x1f\x8b":
        data = _gunzip(name, data)
    quiet = logging.getLogger("nibabel.global")
    level, quiet.level = quiet.level, logging.CRITICAL  # its header checks would print to stderr
    try:
        image = nib.Nifti1Image.from_bytes(data)
    except Exception as err:  # nibabel raises several types for broken headers
        try:
            image = nib.Nifti2Image.from_bytes(data)
        except Exception:
            raise DataError(f"{name}: not a readable NIfTI file ({err})") from None
    finally:
        quiet.level = level
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise DataError(f"{name}: a {len(image.shape)}-D NIfTI of shape {image.shape}; a 3-D volume is expected")
    _check_size(name, shape)
    try:
        voxels = np.asanyarray(image.dataobj).reshape(shape)
    except Exception as err:
        raise DataError(f"{name}: the NIfTI data cannot be read ({err})") from None
    note = _note(voxels.dtype)
    image = nib.Nifti1Image(voxels, image.affine, image.header) if voxels.shape != image.shape else image
    canonical = nib.as_closest_canonical(image)
    start = nib.orientations.io_orientation(canonical.affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.io_orientation(image.affine))
    volume = np.asanyarray(canonical.dataobj)
    try:
        volume = to_uint8(volume, window)
    except DataError as err:
        raise DataError(f"{name}: {err}") from None
    slices = radiological_slices(volume)
    zooms = canonical.header.get_zooms()[:3]
    spacing = (float(zooms[1]), float(zooms[0]), float(zooms[2])) if all(z > 0 for z in zooms) else None
    sample = slices[0]
    stacked = np.stack([to_channels(s, channels, name) for s in slices])
    return Scan(name, "nifti", stacked, spacing, np.asarray(image.affine, dtype=np.float64),
                note, _channels_note(sample, channels), (shape, transform))


def radiological_slices(volume: np.ndarray) -> np.ndarray:
    """A RAS+ volume ``(x, y, z)`` -> axial slices ``(z, rows, cols)`` as radiology viewers show them.

    Row 0 is the most anterior voxel row and column 0 the patient's rightmost voxel column
    (``slices[k, r, c] = volume[X-1-c, Y-1-r, k]``); slices go from inferior to superior.
    """
    return volume[::-1, ::-1].transpose(2, 1, 0)


def _gunzip(name: str, data: bytes) -> bytes:
    out = bytearray()
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        try:
            while chunk := f.read(1 << 20):
                out += chunk
                if len(out) > MAX_DECOMPRESSED:
                    raise DataError(f"{name}: expands to over {MAX_DECOMPRESSED >> 20} MB; refused")
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{name}: the gzip data is broken ({err})") from None
    return bytes(out)


def _read_dicom(name: str, data: bytes):  # noqa: ANN202 (pydicom Dataset)
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" not in ds:
            raise DataError(f"{name}: a DICOM file without pixel data")
        _check_size(name, (int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)))
        ds.pixel_array  # decode now, so that a broken file is named here  # noqa: B018
    except DataError:
        raise
    except InvalidDicomError:
        raise DataError(f"{name}: not a DICOM file") from None
    except Exception as err:  # truncated data, unsupported compression, missing attributes
        raise DataError(f"{name}: the DICOM pixel data cannot be read ({type(err).__name__}: {err})") from None
    return ds


def _read_zip(name: str, data: bytes, channels: int, window: Window | None = None) -> list[Scan]:
    """A zip of 2D images -> one image Scan each; otherwise its files form one DICOM series."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and not _hidden(m.filename)
                   and PurePosixPath(m.filename).name.upper() != "DICOMDIR"]
    except (zipfile.BadZipFile, ValueError, NotImplementedError) as err:
        raise DataError(f"{name}: not a readable zip file ({err})") from None
    if sum(m.file_size for m in members) > MAX_DECOMPRESSED:
        raise DataError(f"{name}: expands to over {MAX_DECOMPRESSED >> 20} MB; refused")
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
        return [read_scan(label, content, channels, window) for label, content in contents]
    return [_dicom_scan(name, [(label, _read_dicom(label, content)) for label, content in contents], channels, window)]


def _hidden(path: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(path).parts)


def _dicom_scan(name: str, datasets: list, channels: int, window: Window | None = None) -> Scan:
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
    return Scan(name, kind, slices, spacing, affine, _note(frames[0].dtype), _channels_note(frames[0], channels))


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
