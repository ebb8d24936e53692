"""The three CLIs end to end on synthetic data, and their error messages."""
from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from conftest import LGG, requires_lgg, write_png
from core import evaluate, predict, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    assert train.main(["--data", "synthetic", "--epochs", "2", "--width", "4", "--size", "64", "--out", str(run)]) == 0
    return run / "best.pt"


def test_evaluate_writes_every_level(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    code = evaluate.main(["--checkpoint", str(checkpoint), "--data", "synthetic", "--json", str(out), "--timing-repeats", "2"])
    assert code == 0
    result = json.loads(out.read_text())
    assert list(result["levels"]) == ["1", "2", "3", "4", "ens"]
    for row in result["levels"].values():
        assert {"dice", "iou", "volume_dice_mean", "volume_dice_median", "params", "flops", "ms_per_image"} <= set(row)
        assert 0 <= row["dice"] <= 1 and row["ms_per_image"] > 0
        assert row["volume_dice_mean"] == pytest.approx(sum(row["volume_dice"].values()) / 2)
    params = [result["levels"][k]["params"] for k in "1234"]
    flops = [result["levels"][k]["flops"] for k in "1234"]
    assert params == sorted(params) and flops == sorted(flops) and len(set(flops)) == 4
    assert result["n_volumes"] == 2 and result["n_images"] == 32  # the checkpoint's validation patients only
    table = capsys.readouterr().out
    assert "L1" in table and "ens" in table and "32 images, 2 volumes" in table


def test_evaluate_selected_levels_and_all_split(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    assert evaluate.main(["--checkpoint", str(checkpoint), "--data", "synthetic", "--split", "all",
                          "--levels", "2", "ens", "--json", str(out), "--timing-repeats", "1"]) == 0
    result = json.loads(out.read_text())
    assert list(result["levels"]) == ["2", "ens"] and result["n_images"] == 192


def test_predict_writes_one_mask_per_input(checkpoint: Path, tmp_path: Path, capsys) -> None:
    a = write_png(tmp_path / "in" / "a.png", np.full((70, 90, 3), 80, np.uint8))
    b = write_png(tmp_path / "in" / "b.jpg", np.full((64, 64), 30, np.uint8))
    assert predict.main(["--checkpoint", str(checkpoint), "--level", "2", str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    mask = cv2.imread(str(tmp_path / "out" / "a_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (70, 90) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "out" / "b_mask.png").exists()
    assert "a.png (image, 1 slice): " in capsys.readouterr().out


def test_predict_writes_volume_outputs_on_the_inputs_grid(checkpoint: Path, tmp_path: Path, capsys) -> None:
    from test_scans import ODD_AFFINE, blob_volume, dicom_bytes, nifti_bytes, series_zip

    volume = blob_volume((40, 36, 6))
    (tmp_path / "in").mkdir()
    nifti = tmp_path / "in" / "head.nii.gz"
    nifti.write_bytes(nifti_bytes(volume, ODD_AFFINE))
    series = tmp_path / "in" / "series.zip"
    series.write_bytes(series_zip({f"{i}.dcm": dicom_bytes(blob_volume((4, 32, 32)).astype(np.uint16)[i] + 50, 3.0 * i, i)
                                   for i in range(4)}))
    out = tmp_path / "out"
    assert predict.main(["--checkpoint", str(checkpoint), str(nifti), str(series), "--out", str(out)]) == 0
    mask = nib.load(out / "head_mask.nii.gz")
    assert mask.shape == volume.shape and np.allclose(mask.affine, ODD_AFFINE) and mask.get_data_dtype() == np.uint8
    with zipfile.ZipFile(out / "head_masks.zip") as archive:
        assert len(archive.namelist()) == 36  # axial (S) slices: voxel axis 1 of ODD_AFFINE
    rows = list(csv.DictReader((out / "series_slices.csv").open()))
    assert [r["slice"] for r in rows] == ["1", "2", "3", "4"] and rows[0]["lesion_mm2"] != ""
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["kind"] for r in summary] == ["nifti", "dicom series"]
    assert nib.load(out / "series_mask.nii.gz").shape == (32, 32, 4)
    printed = capsys.readouterr().out
    assert "head.nii.gz (nifti, 36 slices)" in printed and "copied into all three" in printed


def test_cli_errors_are_one_clear_line(checkpoint: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    assert predict.main(["--checkpoint", str(checkpoint), str(bad), "--out", str(tmp_path / "o")]) == 1
    assert f"error: {bad}: not a readable image" in capsys.readouterr().err
    assert evaluate.main(["--checkpoint", str(tmp_path / "nope.pt"), "--data", "synthetic"]) == 2
    assert "nope.pt: no such checkpoint file" in capsys.readouterr().err
    assert train.main(["--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "not a data folder" in capsys.readouterr().err
    assert evaluate.main(["--checkpoint", str(checkpoint), "--data", "synthetic", "--levels", "7"]) == 2
    assert "level 7 not available" in capsys.readouterr().err


@requires_lgg
def test_predict_reads_a_kaggle_patient_folder_as_one_volume(checkpoint: Path, tmp_path: Path, capsys) -> None:
    patient = LGG / "TCGA_CS_4941_19960909"
    count = len(list(patient.glob("*_mask.tif")))
    assert predict.main(["--checkpoint", str(checkpoint), str(patient), "--out", str(tmp_path)]) == 0
    assert f"TCGA_CS_4941_19960909 (image series, {count} slices)" in capsys.readouterr().out
    assert nib.load(tmp_path / "TCGA_CS_4941_19960909_mask.nii.gz").shape == (256, 256, count)
    rows = list(csv.DictReader((tmp_path / "TCGA_CS_4941_19960909_slices.csv").open()))
    assert [r["slice"] for r in rows] == [str(n) for n in range(1, count + 1)]


@requires_lgg
def test_predict_on_a_real_lgg_slice(checkpoint: Path, tmp_path: Path) -> None:
    slice_path = LGG / "TCGA_CS_4941_19960909" / "TCGA_CS_4941_19960909_12.tif"
    assert predict.main(["--checkpoint", str(checkpoint), str(slice_path), "--out", str(tmp_path)]) == 0
    assert cv2.imread(str(tmp_path / "TCGA_CS_4941_19960909_12_mask.png"), 0).shape == (256, 256)
