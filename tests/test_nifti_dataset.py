"""NIfTI datasets (nnU-Net v2 raw and MSD layouts) the tests make: loading, orientation, bad input,
training and evaluation through the CLIs, and ``core.convert`` both ways."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import ROOT
from core.convert import convert
from core.data import DataError, channels_and_classes, input_size, load_source
from core.data.nifti_dataset import read_dataset

SHAPE = (23, 19, 5)  # odd, non-square, few slices
LPS_AFFINE = np.array([[-0.8, 0, 0, 40.0], [0, -0.9, 0, 30.0], [0, 0, 2.5, -10.0], [0, 0, 0, 1]])


def save(path: Path, array: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(nib.Nifti1Image(array, affine).to_bytes()))


def case_arrays(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Two float channels and a 3-class label map with a blob of 1 and a band of 2."""
    rng = np.random.default_rng(seed)
    label = np.zeros(SHAPE, np.uint8)
    label[4:14, 3:12, 1:4] = 1
    label[6:9, 3:12, 2] = 2
    channels = [(rng.normal(100, 10, SHAPE) + 80 * (label > 0) * (k + 1)).astype(np.float32) for k in range(2)]
    return channels, label


def nnunet_dataset(root: Path, cases: int = 4, labels: dict | None = None) -> Path:
    for i in range(cases):
        channels, label = case_arrays(i)
        for k, channel in enumerate(channels):
            save(root / "imagesTr" / f"case{i:02d}_{k:04d}.nii.gz", channel)
        save(root / "labelsTr" / f"case{i:02d}.nii.gz", label)
    spec = {"channel_names": {"0": "T1", "1": "FLAIR"}, "labels": labels or {"background": 0, "core": 1, "band": 2},
            "numTraining": cases, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def msd_dataset(root: Path, cases: int = 3) -> Path:
    entries = []
    for i in range(cases):
        channels, label = case_arrays(10 + i)
        save(root / "imagesTr" / f"brain_{i}.nii.gz", np.stack(channels, axis=-1))
        save(root / "labelsTr" / f"brain_{i}.nii.gz", (label > 0).astype(np.uint8))
        entries.append({"image": f"./imagesTr/brain_{i}.nii.gz", "label": f"./labelsTr/brain_{i}.nii.gz"})
    spec = {"name": "Brain", "modality": {"0": "T1", "1": "FLAIR"}, "labels": {"0": "background", "1": "tumour"},
            "numTraining": cases, "training": entries, "test": []}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def cli(module: str, *args: object) -> subprocess.CompletedProcess:
    """``python -m core.<module> args`` from the project root, output captured."""
    return subprocess.run([sys.executable, "-m", f"core.{module}", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def train(root: Path, run: Path, *flags: object) -> None:
    """A tiny ``core.train`` run on ``root`` (width 4, batch 4, one thread) that must succeed."""
    result = cli("train", "--data", root, "--out", run, "--width", 4, "--batch-size", 4, "--threads", 1, *flags)
    assert result.returncode == 0, result.stderr[-2000:]


def test_nnunet_layout_loads_cases_as_axial_ras_slices(tmp_path: Path) -> None:
    root = nnunet_dataset(tmp_path / "Dataset001_Toy")
    assert channels_and_classes(root) == (2, 3)
    slices = load_source(root, num_classes=3, channels=2)
    assert slices.images.shape == (4 * SHAPE[2], SHAPE[1], SHAPE[0], 2) and slices.images.dtype == np.uint8
    assert sorted(set(slices.volumes)) == ["case00", "case01", "case02", "case03"] and slices.has_volumes
    assert set(np.unique(slices.masks)) == {0, 1, 2}
    # the same case stored in RAS+ order gives the same slices: orientation comes from the affine
    channels, label = case_arrays(0)
    ras = np.diag([0.8, 0.9, 2.5, 1.0])
    flip = (slice(None, None, -1), slice(None, None, -1), slice(None))  # LPS -> RAS: reverse x and y
    other = tmp_path / "ras"
    for k, channel in enumerate(channels):
        save(other / "imagesTr" / f"case00_{k:04d}.nii.gz", channel[flip], ras)
    save(other / "labelsTr" / "case00.nii.gz", label[flip], ras)
    (other / "dataset.json").write_text((root / "dataset.json").read_text())
    same = load_source(other, num_classes=3, channels=2)
    first = slices.select_volumes(["case00"])
    assert np.array_equal(same.masks, first.masks) and np.array_equal(same.images, first.images)


def test_msd_layout_with_4d_images(tmp_path: Path) -> None:
    root = msd_dataset(tmp_path / "Task01_Toy")
    ds = read_dataset(root)
    assert ds.layout == "msd" and ds.channels == ["T1", "FLAIR"] and ds.num_classes == 1
    slices = load_source(root, size=32, channels=2)
    assert slices.images.shape == (3 * SHAPE[2], 32, 32, 2) and set(np.unique(slices.masks)) == {0, 1}
    assert input_size(root) == 32  # the smallest candidate that keeps these blobs (the images are 23 px)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("bad_json", "dataset.json: not valid JSON"),
        ("regions", "region-based labels"),
        ("missing_label", "case03_0000.nii.gz: no label case03.nii.gz"),
        ("missing_channel", "case01 lacks channel file case01_0001.nii.gz"),
        ("unknown_label", "case02.nii.gz: label value 3 is not in dataset.json's labels"),
        ("shape", "case01_0000.nii.gz: shape (23, 19, 4) differs from its label"),
        ("affine", "case01_0001.nii.gz: its affine (voxel to mm) differs"),
        ("label_4d", "case00.nii.gz: a 4-D label map"),
        ("gap", "labels must be 0 (background), 1, ... without gaps"),
    ],
)
def test_bad_datasets_name_the_file_and_the_problem(tmp_path: Path, breakage: str, message: str) -> None:
    root = nnunet_dataset(tmp_path / "ds")
    spec = json.loads((root / "dataset.json").read_text())
    if breakage == "bad_json":
        (root / "dataset.json").write_text("{'channel_names': ")
    elif breakage == "regions":
        (root / "dataset.json").write_text(json.dumps(spec | {"regions_class_order": [1, 2]}))
    elif breakage == "missing_label":
        (root / "labelsTr" / "case03.nii.gz").unlink()
    elif breakage == "missing_channel":
        (root / "imagesTr" / "case01_0001.nii.gz").unlink()
    elif breakage == "unknown_label":
        _, label = case_arrays(2)
        label[0, 0, 0] = 3
        save(root / "labelsTr" / "case02.nii.gz", label)
    elif breakage == "shape":
        save(root / "imagesTr" / "case01_0000.nii.gz", np.zeros((23, 19, 4), np.float32))
    elif breakage == "affine":
        save(root / "imagesTr" / "case01_0001.nii.gz", case_arrays(1)[0][1], np.diag([1.0, 1.0, 1.0, 1.0]))
    elif breakage == "label_4d":
        save(root / "labelsTr" / "case00.nii.gz", np.zeros((*SHAPE, 2), np.uint8))
    elif breakage == "gap":
        (root / "dataset.json").write_text(json.dumps(spec | {"labels": {"background": 0, "a": 1, "b": 3}}))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_source(root, size=32, num_classes=3, channels=2)


def test_train_and_evaluate_a_multi_class_dataset_with_no_channel_or_class_flags(tmp_path: Path) -> None:
    root = nnunet_dataset(tmp_path / "Dataset002_Toy", cases=5)
    run = tmp_path / "run"
    train(root, run, "--epochs", 2)
    config = json.loads((run / "config.json").read_text())
    assert (config["in_channels"], config["num_classes"], config["size"]) == (2, 3, 32)
    out = tmp_path / "eval.json"
    evaluate = cli("evaluate", "--checkpoint", run / "best.pt", "--data", root, "--split", "val", "--json", out,
                   "--timing-repeats", 1)
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["labels"] == ["background", "core", "band"] and result["split"] == "val"
    level = result["levels"]["4"]
    assert 0.0 <= level["dice"] <= 1.0 and {"volume_dice_class1", "volume_dice_class2"} <= set(level)
    assert "vDice core" in evaluate.stdout and "vDice band" in evaluate.stdout


def test_convert_kaggle_to_nnunet_and_back_is_exact(tmp_path: Path, lgg_folder: Path) -> None:
    raw = tmp_path / "Dataset501_LGG"
    assert "3 patients" in convert(lgg_folder, raw)
    assert read_dataset(raw).channels == ["pre-contrast", "FLAIR", "post-contrast"]
    back = tmp_path / "kaggle_again"
    assert "3 cases" in convert(raw, back)
    original, via_nifti, again = load_source(lgg_folder), load_source(raw), load_source(back)
    for other in (via_nifti, again):
        assert np.array_equal(original.images, other.images) and np.array_equal(original.masks, other.masks)
        assert original.names == other.names and original.volumes == other.volumes
    with pytest.raises(DataError, match="already exists"):
        convert(lgg_folder, raw)


def test_convert_cli_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    result = cli("convert", tmp_path, tmp_path / "out")
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "neither a kaggle_3m folder nor a NIfTI dataset" in result.stderr


def test_predict_reads_a_cases_channel_files_as_one_scan_and_writes_label_maps(tmp_path: Path) -> None:
    root = nnunet_dataset(tmp_path / "Dataset003_Toy", cases=4)
    run = tmp_path / "run"
    train(root, run, "--epochs", 3, "--lr", "3e-3")
    files = [root / "imagesTr" / f"case00_{k:04d}.nii.gz" for k in (1, 0)]
    out = tmp_path / "pred"
    predict = cli("predict", "--checkpoint", run / "best.pt", "--out", out, *files)
    assert predict.returncode == 0, predict.stderr[-2000:]
    written = nib.load(out / "case00_mask.nii.gz")
    assert written.shape == SHAPE and np.allclose(written.affine, LPS_AFFINE)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    three = root / "imagesTr" / "case01_0002.nii.gz"  # a channel the model does not have
    save(three, case_arrays(1)[0][0])
    extra = cli("predict", "--checkpoint", run / "best.pt", "--out", out,
                *[root / "imagesTr" / f"case01_{k:04d}.nii.gz" for k in range(3)])
    assert extra.returncode == 1 and "3 channel file(s) for this case; the model takes 2" in extra.stderr


def ct_dataset(root: Path) -> Path:
    """One CT channel in Hounsfield units: soft tissue around 40 HU, the organ at 120 HU, air at -1000."""
    rng = np.random.default_rng(5)
    for i in range(3):
        label = np.zeros(SHAPE, np.uint8)
        label[5:15, 4:12, 1:4] = 1
        hu = np.full(SHAPE, -1000.0, np.float32)
        hu[2:21, 2:17] = rng.normal(40, 5, (19, 15, SHAPE[2]))
        hu[label > 0] = rng.normal(120, 5, int(label.sum()))
        hu[0, 0, 0] = 3000 + 1000 * i  # metal: a different maximum in every case
        save(root / "imagesTr" / f"ct{i}_0000.nii.gz", hu)
        save(root / "labelsTr" / f"ct{i}.nii.gz", label)
    (root / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "file_ending": ".nii.gz"}))
    return root


def test_ct_uses_one_hounsfield_window_from_training_to_prediction(tmp_path: Path) -> None:
    root = ct_dataset(tmp_path / "Dataset005_CT")
    from core.data import intensity_windows
    lo, hi = intensity_windows(root)[0]
    assert 100 < lo < 120 < hi < 140  # the organ's foreground percentiles, not the metal or the air
    run = tmp_path / "run"
    train(root, run, "--epochs", 1, "--val-fraction", "0.34")
    from core.checkpoint import load_checkpoint
    from core.scans import read_scan
    _, meta = load_checkpoint(run / "best.pt")
    pre = meta["preprocessing"]
    assert pre["intensity"] == "none" and pre["windows"]["0"] == [lo, hi]
    # prediction reads a case exactly as training decoded it: same window, same slices
    trained = load_source(root, channels=1, volumes=["ct1"], windows={0: (lo, hi)})
    scan = read_scan("ct1_0000.nii.gz", (root / "imagesTr" / "ct1_0000.nii.gz").read_bytes(), 1, (lo, hi))
    assert np.array_equal(scan.slices, trained.images)


def test_a_resumed_ct_run_keeps_the_window_it_started_with(tmp_path: Path) -> None:
    root = ct_dataset(tmp_path / "Dataset005_CT")
    from core.checkpoint import load_checkpoint
    from core.data import intensity_windows
    run = tmp_path / "run"
    train(root, run, "--epochs", 1, "--val-fraction", "0.34", "--size", 32)
    saved = load_checkpoint(run / "last.pt")[1]["preprocessing"]["windows"]
    label = nib.load(root / "labelsTr" / "ct0.nii.gz").get_fdata().astype(np.uint8)
    save(root / "imagesTr" / "ct0_0000.nii.gz", np.where(label > 0, 300.0, -1000.0).astype(np.float32))
    assert intensity_windows(root)[0] != tuple(saved["0"])  # the data now has another window
    train(root, run, "--resume", "--epochs", 2)
    _, meta = load_checkpoint(run / "last.pt")
    assert meta["epoch"] == 2 and meta["preprocessing"]["windows"] == saved


def test_a_coronal_model_trains_evaluates_and_writes_masks_on_the_input_grid(tmp_path: Path,
                                                                            image_mask_folder: Path) -> None:
    root = nnunet_dataset(tmp_path / "Dataset006_Toy", cases=4)
    coronal = load_source(root, size=32, channels=2, num_classes=3, volumes=["case00"], axis="coronal")
    assert len(coronal) == SHAPE[1]  # one slice per y (posterior to anterior), not per z
    run = tmp_path / "run"
    train(root, run, "--epochs", 1, "--axis", "coronal")
    evaluate = cli("evaluate", "--checkpoint", run / "best.pt", "--data", root, "--timing-repeats", 1)
    assert evaluate.returncode == 0 and f"{SHAPE[1]} images" in evaluate.stdout, evaluate.stderr[-2000:]
    out = tmp_path / "pred"
    files = [root / "imagesTr" / f"case00_{k:04d}.nii.gz" for k in (0, 1)]
    predict = cli("predict", "--checkpoint", run / "best.pt", "--out", out, *files)
    assert predict.returncode == 0, predict.stderr[-2000:]
    written = nib.load(out / "case00_mask.nii.gz")
    assert written.shape == SHAPE and np.allclose(written.affine, LPS_AFFINE)
    assert f"{SHAPE[1]} slices" in predict.stdout
    with pytest.raises(DataError, match="--axis sagittal slices NIfTI volumes"):
        load_source(image_mask_folder, axis="sagittal")
    from core.scans import read_scan
    png = (image_mask_folder / "images" / "case0.png").read_bytes()
    with pytest.raises(DataError, match="case0.png: this model segments coronal slices of NIfTI volumes"):
        read_scan("case0.png", png, 3, None, "coronal")
