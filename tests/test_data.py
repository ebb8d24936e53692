"""Data sources on tiny folders the tests make, every bad-data error, split, sampler, real LGG."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import LGG, requires_lgg, write_png
from core.data import DataError, EpochSampler, SliceDataset, load_source, read_image, split_volumes, train_augmentation
from core.data.synthetic import make_synthetic


def test_image_mask_folder_loads_pairs(image_mask_folder: Path) -> None:
    s = load_source(image_mask_folder)
    assert s.images.shape == (3, 32, 32, 3) and s.masks.shape == (3, 32, 32)
    assert set(np.unique(s.masks)) == {0, 1}
    assert s.names == ["case0", "case1", "case2"] and not s.has_volumes


def test_folder_resizes_and_converts_channels(image_mask_folder: Path) -> None:
    s = load_source(image_mask_folder, size=16, channels=1)
    assert s.images.shape == (3, 16, 16, 1)
    assert set(np.unique(s.masks)) <= {0, 1}


def test_lgg_layout_groups_slices_by_patient(lgg_folder: Path) -> None:
    s = load_source(lgg_folder)
    assert len(s) == 12 and len(set(s.volumes)) == 3
    assert s.names[:2] == ["TCGA_XX_0000_20000101_1", "TCGA_XX_0000_20000101_2"]
    assert s.positive.sum() == 6


def test_colour_order_is_rgb_not_opencv_bgr(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # first channel (pre-contrast in LGG) bright
    write_png(tmp_path / "x.tif", rgb[..., ::-1])  # OpenCV writes BGR
    assert read_image(tmp_path / "x.tif")[0, 0].tolist() == [200, 0, 0]


def test_sixteen_bit_images_are_windowed_to_uint8(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(0, 4000, 20, dtype=np.uint16), (20, 1))
    ramp[0, 0] = 65535  # a hot pixel must not darken the rest, as a min..max scaling would
    write_png(tmp_path / "x.png", ramp)
    out = read_image(tmp_path / "x.png", channels=1)[..., 0]
    assert out[1, 0] == 0 and out[1, -1] == 255 and abs(int(out[1, 100]) - 128) <= 2


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing_mask", "case1.png: no mask named case1"),
        ("extra_mask", "stray.png: mask without an image"),
        ("size_mismatch", "case0.png: mask is 16x16 but its image is 32x32"),
        ("non_binary", "case2.png: mask is not binary"),
        ("unreadable", "case0.png: not a readable image"),
        ("empty", "images: no images"),
    ],
)
def test_bad_image_mask_folder_names_the_file(image_mask_folder: Path, breakage: str, message: str) -> None:
    images, masks = image_mask_folder / "images", image_mask_folder / "masks"
    if breakage == "missing_mask":
        (masks / "case1.png").unlink()
    elif breakage == "extra_mask":
        write_png(masks / "stray.png", np.zeros((32, 32), np.uint8))
    elif breakage == "size_mismatch":
        write_png(masks / "case0.png", np.zeros((16, 16), np.uint8))
    elif breakage == "non_binary":
        write_png(masks / "case2.png", np.arange(32 * 32, dtype=np.uint16).reshape(32, 32).astype(np.uint8))
    elif breakage == "unreadable":
        (images / "case0.png").write_bytes(b"not a png at all")
    elif breakage == "empty":
        for f in [*images.iterdir(), *masks.iterdir()]:
            f.unlink()
    with pytest.raises(DataError, match=message):
        load_source(image_mask_folder)


def test_bad_lgg_layout_names_the_file(lgg_folder: Path) -> None:
    patient = next(lgg_folder.iterdir())
    (patient / f"{patient.name}_3_mask.tif").unlink()
    with pytest.raises(DataError, match=f"{patient.name}_3.tif: no mask"):
        load_source(lgg_folder)
    (patient / f"{patient.name}_3.tif").unlink()
    (patient / f"{patient.name}_4.tif").unlink()
    with pytest.raises(DataError, match=f"{patient.name}_4_mask.tif: mask without an image"):
        load_source(lgg_folder)


def test_unknown_folder_explains_the_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a data folder.*images/ and masks/"):
        load_source(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        load_source(tmp_path / "missing")


def test_synthetic_is_deterministic_and_has_lesions() -> None:
    a, b = make_synthetic(n_volumes=2, slices_per_volume=4, size=32), make_synthetic(n_volumes=2, slices_per_volume=4, size=32)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert 0 < a.positive.sum() < len(a)
    lesion = a.masks.astype(bool)
    # lesions are brighter than the rest of the brain in the FLAIR-like channel
    assert a.images[..., 1][lesion].mean() > a.images[..., 1][~lesion & (a.images[..., 1] > 40)].mean() + 30


def test_split_is_by_volume_and_seeded() -> None:
    volumes = [f"p{i // 5}" for i in range(50)]
    train, val = split_volumes(volumes, 0.2, seed=3)
    assert len(val) == 2 and not set(train) & set(val) and sorted(train + val) == sorted(set(volumes))
    assert split_volumes(volumes, 0.2, seed=3) == (train, val)
    assert split_volumes(volumes, 0.2, seed=4) != (train, val)
    with pytest.raises(DataError, match="at least 2 volumes"):
        split_volumes(["only"], 0.2, 0)


def test_epoch_sampler_keeps_all_positives_and_a_share_of_empty_slices() -> None:
    positive = np.array([True] * 10 + [False] * 40)
    sampler = EpochSampler(positive, empty_fraction=0.25, seed=0)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 20 and set(range(10)) <= set(drawn)
    sampler.set_epoch(1)
    assert sorted(list(sampler)) != sorted(drawn)


def test_dataset_yields_uint8_chw_with_augmentation() -> None:
    s = make_synthetic(n_volumes=1, slices_per_volume=2, size=32)
    image, mask, index = SliceDataset(s, train_augmentation())[1]
    assert image.shape == (3, 32, 32) and image.dtype.is_floating_point is False
    assert mask.shape == (32, 32) and index == 1
    assert set(mask.unique().tolist()) <= {0, 1}


@requires_lgg
def test_real_lgg_counts() -> None:
    s = load_source(LGG)
    assert len(set(s.volumes)) == 74
    assert len(s) == 2630
    assert int(s.positive.sum()) == 929
    assert s.images.shape[1:] == (256, 256, 3)
    # FLAIR (channel 1 in RGB order) is the brightest inside lesions in this data
    lesion = s.masks.astype(bool)
    means = [s.images[..., c][lesion].mean() for c in range(3)]
    assert int(np.argmax(means)) == 1
