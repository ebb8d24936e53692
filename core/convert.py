"""``python -m core.convert``: a ``kaggle_3m`` folder to the nnU-Net v2 raw layout, and back.

    python -m core.convert ../shared/data/lgg_mri/kaggle_3m /data/Dataset501_LGG   # -> nnU-Net raw
    python -m core.convert /data/Dataset501_LGG /data/kaggle_3m_again              # -> kaggle_3m

The direction follows the source: a ``kaggle_3m`` folder becomes ``imagesTr/<patient>_000{0,1,2}.nii.gz``
(pre-contrast, FLAIR, post-contrast), ``labelsTr/<patient>.nii.gz`` (0 background, 1 abnormality)
and a ``dataset.json``, so nnU-Net, MONAI and this project read the same data. Each volume is laid
out so that its RAS+ axial slices in the radiological convention are the TIFF slices again (voxels
of 1 mm: the TIFFs carry no spacing). A NIfTI dataset (nnU-Net raw or MSD, 1 or 3 channels, one
label) becomes ``<case>/<case>_<n>.tif`` + ``_mask.tif``. The destination must not exist yet; it
appears only once complete.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.data import DataError, read_image, read_mask
from core.data.lgg import is_lgg_folder, list_lgg
from core.data.nifti_dataset import is_nifti_dataset, load_case, read_dataset
from core.orientation import from_slices
from core.scans.scan import nifti_bytes
from core.files import atomic_write
from core.outputs import image_bytes

LGG_CHANNELS = ["pre-contrast", "FLAIR", "post-contrast"]
LGG_LABELS = {"background": 0, "abnormality": 1}
ENDING = ".nii.gz"
GRID = np.eye(4)  # 1 mm voxels, RAS+: the TIFFs carry no spacing


def lgg_to_nnunet(source: Path, out: Path, name: str) -> int:
    """Write ``source`` (kaggle_3m) as an nnU-Net v2 raw dataset ``name`` in ``out``; returns the case count."""
    patients: dict[str, list[tuple[Path, Path]]] = {}
    for patient, _, image, mask in list_lgg(source):
        patients.setdefault(patient, []).append((image, mask))
    for patient, files in tqdm(patients.items(), desc="converting patients", unit="patient"):
        images = np.stack([read_image(image, 3) for image, _ in files])
        masks = np.stack([read_mask(mask) for _, mask in files])
        for c in range(3):
            channel = nifti_bytes(from_slices(images[..., c]), GRID)
            atomic_write(out / "imagesTr" / f"{patient}_{c:04d}{ENDING}", channel)
        atomic_write(out / "labelsTr" / f"{patient}{ENDING}", nifti_bytes(from_slices(masks), GRID))
    spec = {"name": name, "description": f"{source.name} (Kaggle LGG layout) converted by core.convert",
            "channel_names": dict(enumerate(LGG_CHANNELS)), "labels": LGG_LABELS,
            "numTraining": len(patients), "file_ending": ENDING}
    atomic_write(out / "dataset.json", json.dumps(spec, indent=2) + "\n")
    return len(patients)


def nifti_to_lgg(source: Path, out: Path) -> int:
    """Write a NIfTI dataset with 1 or 3 channels and one label as ``kaggle_3m``; returns the case count."""
    dataset = read_dataset(source)
    if len(dataset.channels) not in (1, 3):
        raise DataError(f"{source / 'dataset.json'}: {len(dataset.channels)} channels; the kaggle_3m layout "
                        "holds RGB slices (1 or 3 channels)")
    if dataset.num_classes != 1:
        raise DataError(f"{source / 'dataset.json'}: {len(dataset.labels)} labels; kaggle_3m masks are binary")
    for case in tqdm(dataset.cases, desc="converting cases", unit="case"):
        images, masks = load_case(dataset, case, len(dataset.channels))
        for n, (image, mask) in enumerate(zip(images, masks), start=1):
            rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
            atomic_write(out / case.id / f"{case.id}_{n}.tif", image_bytes(rgb, ".tif"))
            atomic_write(out / case.id / f"{case.id}_{n}_mask.tif", image_bytes(mask * 255, ".tif"))
    return len(dataset.cases)


def convert(source: Path, out: Path) -> str:
    """Convert ``source`` into ``out`` in the other layout; returns a one-line summary.

    The files go to a hidden ``.<out>.partial`` folder first, renamed to ``out`` once complete.
    """
    if out.exists():
        raise DataError(f"{out}: already exists; pick a new destination")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted conversion
    if is_nifti_dataset(source):
        summary = f"{nifti_to_lgg(source, partial)} cases -> {out} (kaggle_3m layout)"
    elif is_lgg_folder(source):
        summary = f"{lgg_to_nnunet(source, partial, out.name)} patients -> {out} (nnU-Net v2 raw layout)"
    else:
        raise DataError(f"{source}: neither a kaggle_3m folder nor a NIfTI dataset with a dataset.json")
    partial.rename(out)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.convert", description=__doc__.split("\n")[0])
    p.add_argument("source", type=Path, help="a kaggle_3m folder, or a NIfTI dataset (nnU-Net v2 raw or MSD)")
    p.add_argument("out", type=Path, help="the new dataset folder (must not exist)")
    args = p.parse_args(argv)
    try:
        print(convert(args.source.expanduser(), args.out.expanduser()))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
