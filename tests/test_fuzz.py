"""Hostile and broken input: every reader ends in a result or a ``DataError`` naming the file.

Property tests (hypothesis) feed the scan readers and the app's upload handler random bytes,
random bytes behind each format's magic number, truncated and corrupted valid files, and valid
files under the wrong extension. Targeted tests cover decompression bombs (huge declared sizes
in tiny files), zero-sized images, wrong channel counts and NaNs: they must be refused from the
header, before anything is decoded or allocated.
"""
from __future__ import annotations

import gzip
import io
import os
import resource
import struct
import time
import zlib
from pathlib import PurePosixPath

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.segmentation import read_upload
from core.data import DataError
from core.scans import scan as scans_module
from core.scans import Scan, read_scans
from core.outputs import zip_bytes
from test_scans import blob_volume, dicom_bytes, nifti_bytes

BASELINE_MB = 0.0
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "500"))  # per property; derandomized: every run tries the same
FUZZ = settings(max_examples=EXAMPLES, deadline=30_000,  # ms: generous for a loaded CI machine, short of a hang
                derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SUFFIXES = [".png", ".jpg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz", ".zip", ".txt", ""]
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"\x1f\x8b", b"PK\x03\x04",
         b"\x00" * 128 + b"DICM", struct.pack("<i", 348)]


def grey(size: int = 24) -> np.ndarray:
    return (np.add.outer(np.arange(size), np.arange(size)) * 5 % 256).astype(np.uint8)


def encode(ext: str, image: np.ndarray) -> bytes:
    return cv2.imencode(ext, image)[1].tobytes()


def tiff_stack(pages: int = 3) -> bytes:
    out = io.BytesIO()
    images = [Image.fromarray(grey()) for _ in range(pages)]
    images[0].save(out, format="TIFF", save_all=True, append_images=images[1:])
    return out.getvalue()


VALID = {
    "scan.png": encode(".png", grey()),
    "scan.jpg": encode(".jpg", cv2.cvtColor(grey(), cv2.COLOR_GRAY2BGR)),
    "scan.bmp": encode(".bmp", grey()),
    "scan.tif": encode(".tiff", grey()),
    "stack.tif": tiff_stack(),
    "scan.dcm": dicom_bytes(blob_volume((1, 16, 16))[0].astype(np.uint16), 0.0, 1),
    "head.nii.gz": nifti_bytes(blob_volume((12, 10, 6)), np.eye(4)),
    "head.nii": nifti_bytes(blob_volume((12, 10, 6)), np.eye(4), gz=False),
    "images.zip": zip_bytes({"a.png": encode(".png", grey()), "b.png": encode(".png", grey(16))}),
    "series.zip": zip_bytes({f"{i}.dcm": dicom_bytes(blob_volume((1, 16, 16))[0].astype(np.uint16), float(i), i)
                          for i in range(3)}),
}


MAX_GROWTH_MB = 512  # peak memory a test may add: fuzz inputs are at most a few kB


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


@pytest.fixture(autouse=True)
def memory_baseline() -> None:
    global BASELINE_MB
    BASELINE_MB = peak_mb()  # a process's peak only grows: what a test adds shows above this


def check(reader, name: str, data: bytes) -> list[Scan]:  # noqa: ANN001 (read_scans or read_upload)
    """Run ``reader``: a list of sound scans, or a DataError that names the file; anything else fails.

    Also fails if reading raised this process's peak memory by over ``MAX_GROWTH_MB`` (a decoder
    that allocates what a header declares).
    """
    try:
        scans = reader(name, data, 3)
    except DataError as err:
        assert str(err).startswith(name) or PurePosixPath(name).name in str(err), f"unnamed file: {err}"
        scans = []
    assert peak_mb() - BASELINE_MB < MAX_GROWTH_MB, f"{name}: reading {len(data)} bytes took {peak_mb() - BASELINE_MB:.0f} MB"
    for scan in scans:
        s, h, w, c = scan.slices.shape
        assert scan.slices.dtype == np.uint8 and min(s, h, w) > 0 and c == 3
    return scans


# -- properties --------------------------------------------------------------------------------
@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_under_any_name(data: bytes, suffix: str) -> None:
    check(read_scans, f"upload{suffix}", data)


@FUZZ
@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_behind_a_formats_magic_number(magic: bytes, tail: bytes, suffix: str) -> None:
    check(read_scans, f"upload{suffix}", magic + tail)


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_valid_files(name: str, cut: float) -> None:
    data = VALID[name]
    check(read_scans, name, data[: int(len(data) * cut)])


@FUZZ
@given(name=st.sampled_from(sorted(VALID)),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_valid_files(name: str, flips: list[tuple[float, int]]) -> None:
    data = bytearray(VALID[name])
    for where, value in flips:
        data[int(len(data) * where)] = value
    check(read_scans, name, bytes(data))


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), suffix=st.sampled_from(SUFFIXES))
def test_valid_files_under_a_wrong_extension(name: str, suffix: str) -> None:
    check(read_scans, f"renamed{suffix}", VALID[name])


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), cut=st.floats(0, 1), suffix=st.sampled_from(SUFFIXES))
def test_upload_handler(name: str, cut: float, suffix: str) -> None:
    data = VALID[name]
    check(read_upload, f"upload{suffix}", data[: int(len(data) * cut)])


def test_every_valid_seed_reads() -> None:
    for name, data in VALID.items():
        assert check(read_scans, name, data), name


# -- decompression bombs: refused from the header, before decoding --------------------------------
def png_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(".png", grey(8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def png_chunk_declaring(length: int) -> bytes:
    data = bytearray(encode(".png", grey(8)))
    struct.pack_into(">I", data, data.index(b"IDAT") - 4, length)
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(".bmp", grey(8)))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(".jpg", grey(8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_declaring(width: int, height: int, page: int) -> bytes:
    """A TIFF stack whose ``page``-th page declares ``width`` x ``height`` (little-endian IFDs)."""
    data = bytearray(tiff_stack(3))
    offset = struct.unpack_from("<I", data, 4)[0]
    for _ in range(page):
        offset = struct.unpack_from("<I", data, offset + 2 + 12 * struct.unpack_from("<H", data, offset)[0])[0]
    for entry in range(struct.unpack_from("<H", data, offset)[0]):
        at = offset + 2 + 12 * entry
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):
            fmt = "<H" if kind == 3 else "<I"
            struct.pack_into(fmt, data, at + 8, width if tag == 256 else height)
    return bytes(data)


def nifti_declaring(shape: tuple[int, ...]) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape(shape)
    return header.binaryblock + b"\x00" * 4 + b"\x00" * 64  # vox_offset 352, then almost no data


def dicom_declaring(rows: int, columns: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(VALID["scan.dcm"]))
    ds.Rows, ds.Columns = rows, columns
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


BOMBS = {
    "png 40000x40000": ("bomb.png", png_declaring(40_000, 40_000), "over the limit"),
    "png chunk of 2 GiB": ("chunk.png", png_chunk_declaring(2**31 - 1), "a broken PNG"),
    "bmp 30000x30000": ("bomb.bmp", bmp_declaring(30_000, 30_000), "over the limit|not a readable image"),
    "jpeg 60000x60000": ("bomb.jpg", jpeg_declaring(60_000, 60_000), "over the limit"),
    "tiff page 2 of 3 at 60000x60000": ("bomb.tif", tiff_declaring(60_000, 60_000, 1), "over the limit"),
    "nifti 4000^3": ("bomb.nii", nifti_declaring((4000, 4000, 4000)), "over the limit"),
    "dicom 60000x60000": ("bomb.dcm", dicom_declaring(60_000, 60_000), "over the limit"),
    "png 0x8": ("empty.png", png_declaring(0, 8), "no pixels|not a readable image"),
    "nifti 0 slices": ("empty.nii", nifti_declaring((8, 8, 0)), "no voxels"),
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_decompression_bombs_are_refused_before_decoding(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name, data, message = BOMBS[case]

    def no_decoding(*_: object) -> None:
        raise AssertionError("the image was handed to the decoder")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    monkeypatch.setattr(cv2, "imdecodemulti", no_decoding)
    start = time.perf_counter()
    with pytest.raises(DataError, match=message) as err:
        read_scans(name, data, 3)
    assert str(err.value).startswith(name) and time.perf_counter() - start < 2.0


def test_archives_that_expand_too_far_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scans_module, "MAX_DECOMPRESSED", 1 << 20)  # the mechanism, at 1 MB instead of 1 GiB
    volume = np.zeros((128, 128, 128), np.uint8)  # 2 MB of zeros: a few kB compressed
    gz = gzip.compress(nib.Nifti1Image(volume, np.eye(4)).to_bytes())
    with pytest.raises(DataError, match="bomb.nii.gz: expands to over 1 MB"):
        read_scans("bomb.nii.gz", gz, 3)
    big = zip_bytes({"a.bmp": encode(".bmp", np.zeros((1100, 1100), np.uint8))})  # 1.2 MB, zipped to a few kB
    with pytest.raises(DataError, match="bomb.zip: expands to over 1 MB"):
        read_scans("bomb.zip", big, 3)
    lying = bytearray(zip_bytes({"a.png": encode(".png", grey())}))
    central = lying.index(b"PK\x01\x02")
    struct.pack_into("<I", lying, central + 24, 10)  # the directory claims 10 bytes: the data says otherwise
    with pytest.raises(DataError, match="lying.zip"):
        read_scans("lying.zip", bytes(lying), 3)


# -- channels and NaNs ------------------------------------------------------------------------
def test_wrong_channel_counts() -> None:
    colour = encode(".png", cv2.cvtColor(grey(), cv2.COLOR_GRAY2BGR))
    with pytest.raises(DataError, match="colour.png: has 3 channels; the model expects 2"):
        read_scans("colour.png", colour, 2)
    grey_alpha = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 2), np.uint8), "LA").save(grey_alpha, format="PNG")
    assert check(read_scans, "grey_alpha.png", grey_alpha.getvalue())[0].slices.shape == (1, 8, 8, 3)
    with pytest.raises(DataError, match=r"t.nii.gz: a 4-D NIfTI"):
        read_scans("t.nii.gz", nifti_bytes(np.zeros((8, 8, 4, 3), np.int16), np.eye(4)), 3)


def test_nans() -> None:
    image = grey().astype(np.float32)
    image[3, 4] = np.nan  # a NaN pixel is background, as in volumes
    assert check(read_scans, "nan.tif", encode(".tiff", image))[0].slices[0, 3, 4].tolist() == [0, 0, 0]
    with pytest.raises(DataError, match="allnan.tif: no finite values"):
        read_scans("allnan.tif", encode(".tiff", np.full_like(image, np.nan)), 3)
    volume = blob_volume((12, 10, 6)).astype(np.float32)
    with pytest.raises(DataError, match="allnan.nii: no finite values"):
        read_scans("allnan.nii", nifti_bytes(np.full_like(volume, np.nan), np.eye(4), gz=False), 3)
    volume[:, :, :3] = np.nan
    scan = check(read_scans, "halfnan.nii", nifti_bytes(volume, np.eye(4), gz=False))[0]
    assert scan.slices.shape == (6, 10, 12, 3)
