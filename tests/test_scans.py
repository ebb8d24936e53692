"""Scans built with pydicom, nibabel and OpenCV: geometry round trips, intensity mapping, clear errors."""
from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from core.data import DataError
from core.scans import read_folder, read_scan, read_scans

ODD_AFFINE = np.array([[0.0, 0.0, -2.0, 40.0],   # voxel axes permuted and flipped: a sagittal-ish LPI grid
                       [-0.9, 0.0, 0.0, 20.0],
                       [0.0, 1.1, 0.0, -30.0],
                       [0.0, 0.0, 0.0, 1.0]])


def blob_volume(shape: tuple[int, int, int], dtype: type = np.int16) -> np.ndarray:
    """A smooth 'head' with a bright off-centre blob: thresholding finds the blob."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    head = 600 * (np.square(grid).sum(0) < 0.8)
    blob = 2400 * (np.square(grid - np.array([0.3, -0.2, 0.1])[:, None, None, None]).sum(0) < 0.08)
    return (head + blob).astype(dtype)


def nifti_bytes(volume: np.ndarray, affine: np.ndarray, gz: bool = True) -> bytes:
    data = nib.Nifti1Image(volume, affine).to_bytes()
    return gzip.compress(data) if gz else data


@pytest.mark.parametrize("affine", [np.diag([1.0, 1.0, 2.5, 1.0]), ODD_AFFINE], ids=["ras", "permuted-flipped"])
def test_nifti_mask_round_trips_to_the_inputs_grid(affine: np.ndarray) -> None:
    volume = blob_volume((24, 20, 12))
    scan = read_scan("head.nii.gz", nifti_bytes(volume, affine), 3)
    assert scan.kind == "nifti" and scan.slices.dtype == np.uint8 and scan.slices.shape[3] == 3
    assert "copied into all three" in scan.channels_note and "percentile" in scan.intensity_note
    masks = scan.slices[..., 0] > 200  # the blob, found slice by slice in display orientation
    back = scan.mask_volume(masks)
    assert back.shape == volume.shape and np.array_equal(back, volume > 2000)
    written = nib.Nifti1Image.from_bytes(gzip.decompress(scan.mask_nifti_bytes(masks)))
    assert written.shape == volume.shape and np.allclose(written.affine, affine)
    assert np.array_equal(np.asarray(written.dataobj) > 0, volume > 2000)
    assert scan.voxel_ml == pytest.approx(abs(np.linalg.det(affine[:3, :3])) / 1000)


def test_nifti_float_with_nan_and_2d_and_4d() -> None:
    volume = blob_volume((16, 16, 4)).astype(np.float32)
    volume[0, 0, 0] = np.nan
    scan = read_scan("f.nii", nifti_bytes(volume, np.eye(4), gz=False), 1)
    assert scan.slices.shape == (4, 16, 16, 1) and scan.channels_note == ""
    flat = read_scan("flat.nii.gz", nifti_bytes(blob_volume((16, 16, 1)), np.eye(4)), 3)
    assert flat.slices.shape[0] == 1
    with pytest.raises(DataError, match=r"t.nii.gz: a 4-D NIfTI of shape \(8, 8, 4, 3\)"):
        read_scan("t.nii.gz", nifti_bytes(np.zeros((8, 8, 4, 3), np.int16), np.eye(4)), 3)


def dicom_bytes(pixels: np.ndarray, position: float | None, number: int, spacing: bool = True,
                orientation: tuple = (1, 0, 0, 0, 1, 0)) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.InstanceNumber = number
    if spacing:
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.9], 3.0
    if position is not None:
        ds.ImagePositionPatient = [0.0, 0.0, position]
        ds.ImageOrientationPatient = list(orientation)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def series_zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_dicom_series_is_ordered_by_position_with_spacing_and_affine() -> None:
    volume = blob_volume((6, 32, 28)).astype(np.uint16) + 1000  # 16-bit, slices along the first axis
    positions = [12.0, 0.0, 6.0, 3.0, 15.0, 9.0]  # shuffled; spacing between slices is 3 mm
    files = {f"IM{i:03d}.dcm": dicom_bytes(volume[round(p / 3)], p, number=i) for i, p in enumerate(positions)}
    files["__MACOSX/._IM000.dcm"] = b"resource fork"
    scan = read_scan("series.zip", series_zip(files), 3)
    assert scan.kind == "dicom series" and scan.slices.shape == (6, 32, 28, 3)
    expected = read_scan("one.dcm", dicom_bytes(volume[0], 0.0, 1), 3)
    assert expected.kind == "dicom" and expected.spacing == (0.8, 0.9, 3.0)
    brightest = [s[..., 0].astype(int).sum() for s in scan.slices]
    assert np.argmax(brightest) == np.argmax(volume.reshape(6, -1).sum(1))  # order restored from positions
    assert scan.spacing == pytest.approx((0.8, 0.9, 3.0)) and scan.voxel_ml == pytest.approx(0.8 * 0.9 * 3 / 1000)
    assert np.allclose(scan.affine[:3, :3], np.diag([-0.9, -0.8, 3.0]))  # LPS -> RAS flips x and y
    written = nib.Nifti1Image.from_bytes(gzip.decompress(scan.mask_nifti_bytes(scan.slices[..., 0] > 128)))
    assert written.shape == (28, 32, 6)


def test_dicom_without_geometry_uses_instance_numbers_and_reports_no_volume() -> None:
    def marked(n: int) -> np.ndarray:  # slice n has a bright band at rows 4n..4n+3
        pixels = np.full((16, 16), 100, np.uint16)
        pixels[4 * n : 4 * n + 4] = 3000
        return pixels

    files = {f"{name}.dcm": dicom_bytes(marked(n), None, n, spacing=False) for name, n in [("b", 3), ("a", 1), ("c", 2)]}
    scan = read_scan("plain.zip", series_zip(files), 1)
    assert scan.spacing is None and scan.voxel_ml is None and scan.affine is None
    assert [int(np.argmax(s[:, 0, 0])) // 4 for s in scan.slices] == [1, 2, 3]


def test_a_corrupt_file_in_a_series_is_named() -> None:
    good = dicom_bytes(blob_volume((1, 16, 16))[0].astype(np.uint16), 0.0, 1)
    files = {"ok.dcm": good, "broken.dcm": good[: len(good) - 300]}
    with pytest.raises(DataError, match=r"series.zip/broken.dcm: the DICOM pixel data cannot be read"):
        read_scan("series.zip", series_zip(files), 3)
    with pytest.raises(DataError, match=r"series.zip/notes.txt: not a DICOM file"):
        read_scan("series.zip", series_zip({"ok.dcm": good, "notes.txt": b"hello"}), 3)


def test_multipage_tiff_becomes_a_stack_and_single_page_an_image() -> None:
    pages = [blob_volume((1, 20, 24), np.uint16)[0] * (i + 1) for i in range(5)]
    ok, data = cv2.imencodemulti(".tiff", pages)
    assert ok
    scan = read_scan("stack.tif", data.tobytes(), 3)
    assert scan.kind == "tiff stack" and scan.slices.shape == (5, 20, 24, 3) and scan.spacing is None
    single = read_scan("one.tif", cv2.imencode(".tif", pages[0])[1].tobytes(), 3)
    assert single.kind == "image" and single.slices.shape == (1, 20, 24, 3) and not single.is_volume


def test_a_zip_of_images_is_a_batch() -> None:
    png = cv2.imencode(".png", np.full((12, 10, 3), 90, np.uint8))[1].tobytes()
    scans = read_scans("batch.zip", series_zip({"a.png": png, "dir/b.png": png}), 3)
    assert [s.name for s in scans] == ["batch.zip/a.png", "batch.zip/dir/b.png"]
    assert all(s.kind == "image" and s.slices.shape == (1, 12, 10, 3) for s in scans)
    with pytest.raises(DataError, match="holds 2 images, not one DICOM series"):
        read_scan("batch.zip", series_zip({"a.png": png, "b.png": png}), 3)


def lgg_slices(patient: str, count: int) -> dict[str, bytes]:
    """A Kaggle LGG patient folder's files: slice n is filled with the value 10 n, each with its mask."""
    files = {}
    for n in range(1, count + 1):
        files[f"{patient}_{n}.tif"] = cv2.imencode(".tif", np.full((16, 12, 3), 10 * n, np.uint8))[1].tobytes()
        files[f"{patient}_{n}_mask.tif"] = cv2.imencode(".tif", np.zeros((16, 12), np.uint8))[1].tobytes()
    return files


def test_numbered_slices_are_one_volume_in_slice_order_without_their_masks(tmp_path) -> None:
    files = lgg_slices("TCGA_X_1", 11)  # 1, 10, 11, 2, ... when sorted as text
    scan, = read_scans("patient.zip", series_zip(files), 3)
    assert scan.kind == "image series" and scan.is_volume and scan.slices.shape == (11, 16, 12, 3)
    assert [int(s[0, 0, 0]) for s in scan.slices] == [10 * n for n in range(1, 12)]
    root = tmp_path / "kaggle_3m"
    for patient, count in [("TCGA_A_1", 3), ("TCGA_B_2", 12)]:
        (root / patient).mkdir(parents=True)
        for name, data in lgg_slices(patient, count).items():
            (root / patient / name).write_bytes(data)
    (root / "data.csv").write_text("Patient,x\n")  # skipped, as the Kaggle root's own table
    (root / ".DS_Store").write_bytes(b"junk")
    scans = read_folder(root, 3)
    assert [(Path(s.name).name, s.kind, len(s.slices)) for s in scans] == [
        ("TCGA_A_1", "image series", 3), ("TCGA_B_2", "image series", 12)]
    assert [int(s[0, 0, 0]) for s in scans[1].slices] == [10 * n for n in range(1, 13)]
    assert len(read_folder(root / "TCGA_A_1", 3)) == 1


def test_a_folder_of_dicom_files_is_one_series_and_other_images_stay_apart(tmp_path) -> None:
    volume = blob_volume((3, 16, 16)).astype(np.uint16) + 100
    series = tmp_path / "series"
    series.mkdir()
    for i, p in enumerate([6.0, 0.0, 3.0]):
        (series / f"IM{i}").write_bytes(dicom_bytes(volume[round(p / 3)], p, i))  # DICOM files without a suffix
    scan, = read_folder(series, 1)
    assert scan.kind == "dicom series" and scan.slices.shape == (3, 16, 16, 1) and scan.spacing == pytest.approx((0.8, 0.9, 3.0))
    photos = tmp_path / "photos"
    photos.mkdir()
    png = cv2.imencode(".png", np.full((8, 8), 50, np.uint8))[1].tobytes()
    for name in ["cat.png", "dog_1.png"]:  # not numbered slices of one stem: one scan each
        (photos / name).write_bytes(png)
    assert [s.kind for s in read_folder(photos, 3)] == ["image", "image"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"notes: holds no images, DICOM, NIfTI or zip files"):
        read_folder(tmp_path / "notes", 3)
    uneven = tmp_path / "uneven"
    uneven.mkdir()
    for n, shape in [(1, (8, 8)), (2, (8, 9))]:
        (uneven / f"p_{n}.png").write_bytes(cv2.imencode(".png", np.zeros(shape, np.uint8))[1].tobytes())
    with pytest.raises(DataError, match=r"uneven: its slices differ in size"):
        read_folder(uneven, 3)


@pytest.mark.parametrize("name, data, message", [
    ("empty.nii.gz", b"", "the file is empty"),
    ("bad.nii.gz", gzip.compress(b"not a nifti header" * 30), "not a readable NIfTI"),
    ("cut.nii.gz", gzip.compress(np.random.default_rng(0).bytes(50_000))[:20_000], "gzip data is broken"),
    ("bad.zip", b"PK\x03\x04 broken", "not a readable zip"),
    ("empty.zip", series_zip({}), "holds no files to read"),
    ("mixed.zip", series_zip({"a.png": b"x", "b.dcm": b"y"}), "mixes images"),
    ("x.dcm", b"\x00" * 200, "not a DICOM file"),
    ("x.png", b"\x89PNG garbage", "not a readable image"),
])
def test_unreadable_inputs_get_a_message_naming_the_file(name: str, data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        read_scan(name, data, 3)
    assert str(info.value).startswith(name)



RIGHT_ANTERIOR, LEFT_POSTERIOR, SUPERIOR_RIGHT = 250, 150, 200  # 8-bit values are used as is


def world_phantom(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A head phantom defined in RAS+ millimetres, sampled on the voxel grid of ``affine``.

    An ellipsoid 'head' (value 40) with three markers of known place: right-anterior at z = 0,
    left-posterior at z = 0, and one 12 mm superior, 12 mm to the patient's right of the midline.
    """
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    volume = np.where(np.square(xyz / np.array([36.0, 44.0, 28.0])).sum(1) < 1, 40, 0)
    for centre, value in (((20, 25, 0), RIGHT_ANTERIOR), ((-20, -25, 0), LEFT_POSTERIOR), ((12, 0, 12), SUPERIOR_RIGHT)):
        volume = np.where(np.square(xyz - np.array(centre)).sum(1) < 6.5**2, value, volume)
    return volume.reshape(shape).astype(np.uint8)


def centroid(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    assert len(rows), "marker not found"
    return rows.mean(), cols.mean()


ORIENTATIONS = {  # voxel -> RAS+ mm; each grid covers about -40..40 x -50..50 x -30..30 mm
    "identity": np.eye(4),
    "ras-2mm": np.array([[2.0, 0, 0, -40], [0, 2.0, 0, -50], [0, 0, 3.0, -30], [0, 0, 0, 1]]),
    "lps": np.array([[-2.0, 0, 0, 40], [0, -2.0, 0, 50], [0, 0, 3.0, -30], [0, 0, 0, 1]]),
    "permuted-flipped": np.array([[0.0, 0, -2.0, 40], [-2.0, 0, 0, 50], [0, 3.0, 0, -30], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_nifti_axial_slices_are_shown_as_radiology_viewers_show_them(name: str) -> None:
    """Anterior at the top, the patient's right on the image's left, inferior slices first."""
    affine = ORIENTATIONS[name].copy()
    if name == "identity":  # 1 mm voxels in RAS order, as a NIfTI saved with np.eye(4); shifted to hold the head
        affine[:3, 3] = [-40, -50, -30]
    extent = np.abs(np.linalg.inv(affine[:3, :3]) @ np.array([80.0, 100.0, 60.0]))
    volume = world_phantom(affine, tuple(int(n) + 1 for n in np.ceil(extent)))
    scan = read_scan("phantom.nii.gz", nifti_bytes(volume, affine), 1)
    grey = scan.slices[..., 0]
    h, w = grey.shape[1:]
    assert (h, w) == ((101, 81) if name == "identity" else (51, 41))  # rows: posterior-anterior, cols: right-left

    level = int(np.argmax((grey == RIGHT_ANTERIOR).sum((1, 2))))
    row, col = centroid(grey[level] == RIGHT_ANTERIOR)
    assert row < h / 2 and col < w / 2, f"right-anterior marker at row {row:.0f}, column {col:.0f} of {h}x{w}"
    row, col = centroid(grey[level] == LEFT_POSTERIOR)
    assert row > h / 2 and col > w / 2, f"left-posterior marker at row {row:.0f}, column {col:.0f} of {h}x{w}"
    superior = [k for k in range(len(grey)) if (grey[k] == SUPERIOR_RIGHT).any()]
    assert superior and min(superior) > level, "slices must go from inferior to superior"
    _, col = centroid(grey[superior[len(superior) // 2]] == SUPERIOR_RIGHT)
    assert col < w / 2

    # the mask of the brightest marker goes back to the input's grid and affine
    masks = grey == RIGHT_ANTERIOR
    written = nib.Nifti1Image.from_bytes(gzip.decompress(scan.mask_nifti_bytes(masks)))
    assert written.shape == volume.shape and np.allclose(written.affine, affine)
    assert np.array_equal(np.asarray(written.dataobj) > 0, volume == RIGHT_ANTERIOR)
