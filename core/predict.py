"""``python -m core.predict``: segment images and scans; write masks and lesion statistics.

Inputs: PNG / JPG / TIFF / BMP images, multi-page TIFF stacks, DICOM files, zips of a DICOM
series or of images, NIfTI volumes (``.nii``, ``.nii.gz``), and folders of these. For a model of
several channels, a case's nnU-Net channel files (``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``,
...) are read as one scan. Numbered slices of one volume (``<stem>_<n>.tif``, as in a Kaggle LGG
patient folder, whose ``_mask`` files are left out) in a folder or zip are one volume; a folder
of DICOM files is one series; a folder of patient folders gives one scan per patient. Outputs in
``--out``:

- a 2D image: ``<name>_mask.png``;
- a volume: ``<name>_mask.nii.gz`` (the input's shape and affine; label values, 0 background), ``<name>_masks.zip`` (one PNG
  per slice) and ``<name>_slices.csv`` (lesion pixels, mm² and max probability per slice);
- always ``summary.csv``: one row per input (lesion voxels, mL where the spacing is known).

Example::

    python -m core.predict --level 2 scan1.tif head.nii.gz series.zip --out results/
    python -m core.predict kaggle_3m/TCGA_CS_4941_19960909 --out results/   # one patient's slices
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.checkpoint import CheckpointError, load_checkpoint
from core.data import DataError
from core.scans import Scan, channel_groups, read_case, read_folder
from core.data.intensity import windows_of
from core.files import atomic_write
from core.inference import lesion_masks, segment_images
from core.levels import LEVEL_HELP, default_level, parse_level
from core.lesions import csv_text, volume_summary
from core.outputs import unique_stems, write_outputs
from core.paths import DEFAULT_CHECKPOINT
from core.postprocess import rule_of
from core.runtime import add_device_flags, autocast_dtype, reexec_with_tuned_malloc, select_device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+", type=Path,
                   help="images, TIFF stacks, DICOM files or zips, NIfTI volumes, or folders of them")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--level", default=None, help=LEVEL_HELP)
    p.add_argument("--threshold", type=float, default=None,
                   help="probability from which a pixel is lesion (default: the checkpoint's, chosen on validation "
                        "folds, else 0.5)")
    p.add_argument("--min-component-fraction", type=float, default=None,
                   help="drop 3D lesion components smaller than this share of the largest (default: the "
                        "checkpoint's rule, else 0: keep all)")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the mirrored image's prediction (default: the checkpoint's rule)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_device_flags(p)
    args = p.parse_args(argv)
    try:
        device = select_device(args.device)
        model, meta = load_checkpoint(args.checkpoint, device)
        level = parse_level(args.level) if args.level else default_level(model)
        dtype = autocast_dtype(device, args.precision)
        rule = rule_of(meta, level) | {k: v for k, v in (("threshold", args.threshold), ("hflip", args.hflip),
                                                  ("min_component_fraction", args.min_component_fraction))
                                if v is not None}
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed, summaries = 0, []
    scans: list[Scan] = []
    windows = windows_of(meta["preprocessing"])  # a CT model's Hounsfield windows by channel
    axis = meta["preprocessing"].get("axis", "axial")
    folders = [p for p in args.inputs if p.is_dir()]
    groups = channel_groups([str(p) for p in args.inputs if not p.is_dir()], model.in_channels)
    for group in [*groups, *folders]:
        try:
            if isinstance(group, Path):
                scans += read_folder(group, model.in_channels, windows, axis)
            else:
                scans += read_case([(n, _read(Path(n))) for n in group], model.in_channels, windows, axis)
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
    for scan, stem in zip(scans, unique_stems([s.name for s in scans])):
        probs = segment_images(model, meta["preprocessing"], scan.slices, level, dtype, hflip=rule["hflip"])
        lesion, masks = lesion_masks(probs, rule["threshold"], rule["min_component_fraction"])
        written = write_outputs(scan, lesion, masks, args.out, stem)
        summary = volume_summary(scan, masks > 0, lesion)
        summaries.append(summary)
        volume = f", {summary['lesion_ml']} mL" if summary["lesion_ml"] is not None else ""
        print(f"{scan.name} ({scan.kind}, {len(masks)} slice{'s' * (len(masks) > 1)}): "
              f"{summary['lesion_voxels']:,} lesion voxels{volume} -> {', '.join(str(w) for w in written)}")
        for note in (scan.intensity_note if scan.is_volume else "", scan.channels_note):
            if note:
                print(f"  note: {note}")
    atomic_write(args.out / "summary.csv", csv_text(summaries))
    return 1 if failed else 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None


if __name__ == "__main__":
    reexec_with_tuned_malloc("core.predict")
    sys.exit(main())
