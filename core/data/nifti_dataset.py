"""NIfTI datasets in the nnU-Net v2 raw and the Medical Segmentation Decathlon (MSD) layouts.

Both have a ``dataset.json`` at the root:

- **nnU-Net v2 raw**: ``channel_names`` (``{"0": "FLAIR", ...}``), ``labels``
  (``{"background": 0, "tumour": 1}``), ``file_ending`` (``".nii.gz"``);
  ``imagesTr/<case>_<XXXX><file_ending>`` one file per channel, ``labelsTr/<case><file_ending>``.
- **MSD**: ``modality`` (``{"0": "FLAIR", ...}``), ``labels`` (``{"0": "background", "1": "edema"}``)
  and ``training``: ``[{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]``,
  with multi-channel cases as one 4-D image.

Each case is a volume (a patient); it is trained on as 2-D axial slices of its closest RAS+
orientation in the radiological convention (``core.orientation.radiological_slices``), as the app
shows and segments NIfTI scans. Intensities follow the channel's modality, as in nnU-Net: a
channel named ``CT`` is clipped to the 0.5th..99.5th percentile of the dataset's foreground
voxels (``ct_windows``, a fixed window in Hounsfield units stored with the model); any other
channel is windowed per case to its own percentiles (``core.data.intensity.to_uint8``), which the
per-volume intensity policy then rescales over the body. Labels must be 0..K-1 as
``dataset.json`` lists them; region-based labels (nnU-Net's ``regions_class_order``) are refused.

Example (a dataset with 2 channels and 3 labels; ``core.convert`` writes such folders)::

    ds = read_dataset("Dataset501_Brain")
    ds.channels, ds.labels, ds.num_classes   # ['T1', 'FLAIR'], {'background': 0, ...}, 3
    slices = load_nifti_dataset("Dataset501_Brain", size=128)
"""
from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.data.errors import DataError
from core.data.intensity import WINDOW, Window, to_uint8
from core.orientation import radiological_slices
from core.data.slices import SliceSet, resize_pair

DATASET_JSON = "dataset.json"
AFFINE_TOLERANCE = 1e-3  # mm: image and label grids must agree to this


@dataclass
class Case:
    """One volume: its id, its image file(s) (one per channel, or one 4-D file) and its label map."""

    id: str
    images: list[Path]
    label: Path


@dataclass
class NiftiDataset:
    root: Path
    layout: str  # "nnunet" or "msd"
    channels: list[str]
    labels: dict[str, int]  # name -> value, background 0
    cases: list[Case]

    @property
    def num_classes(self) -> int:
        """This project's class count: 1 (sigmoid) for background + one label, else the label count (softmax)."""
        return 1 if len(self.labels) == 2 else len(self.labels)


def is_nifti_dataset(root: Path) -> bool:
    return (Path(root) / DATASET_JSON).is_file()


def read_dataset(root: str | Path) -> NiftiDataset:
    """Parse ``dataset.json`` and list the cases; ``DataError`` naming the file on any problem."""
    root = Path(root)
    path = root / DATASET_JSON
    try:
        spec = json.loads(path.read_text())
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(spec, dict):
        raise DataError(f"{path}: expected a JSON object")
    if "regions_class_order" in spec:
        raise DataError(f"{path}: region-based labels (regions_class_order) are not supported; "
                        "give each label one integer value")
    if "channel_names" in spec:
        channels, labels = _names(spec, "channel_names", path), _nnunet_labels(spec, path)
        return NiftiDataset(root, "nnunet", channels, labels, _nnunet_cases(root, spec, len(channels), path))
    if "modality" in spec and "training" in spec:
        channels, labels = _names(spec, "modality", path), _msd_labels(spec, path)
        return NiftiDataset(root, "msd", channels, labels, _msd_cases(root, spec, path))
    raise DataError(f"{path}: neither the nnU-Net v2 layout (channel_names, labels, file_ending) "
                    "nor the MSD layout (modality, labels, training)")


def _names(spec: dict, key: str, path: Path) -> list[str]:
    names = spec[key]
    if not isinstance(names, dict) or not names or sorted(names) != [str(i) for i in range(len(names))]:
        raise DataError(f"{path}: {key} must map \"0\", \"1\", ... to names")
    return [str(names[str(i)]) for i in range(len(names))]


def _check_labels(labels: dict[str, int], path: Path) -> dict[str, int]:
    values = sorted(labels.values())
    if values != list(range(len(values))) or len(values) < 2:
        raise DataError(f"{path}: labels must be 0 (background), 1, ... without gaps; found {values}")
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


def _nnunet_labels(spec: dict, path: Path) -> dict[str, int]:
    labels = spec.get("labels")
    if not isinstance(labels, dict):
        raise DataError(f"{path}: 'labels' must map names to integer values")
    if any(isinstance(v, list) for v in labels.values()):
        raise DataError(f"{path}: region-based labels (lists of values) are not supported")
    try:
        values = {str(k): int(v) for k, v in labels.items()}
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' values must be integers") from None
    return _check_labels(values, path)


def _msd_labels(spec: dict, path: Path) -> dict[str, int]:
    labels = spec.get("labels")
    if not isinstance(labels, dict):
        raise DataError(f"{path}: 'labels' must map values (\"0\", \"1\", ...) to names")
    try:
        values = {str(name): int(value) for value, name in labels.items()}
    except ValueError:
        raise DataError(f"{path}: 'labels' keys must be integers") from None
    return _check_labels(values, path)


def _nnunet_cases(root: Path, spec: dict, n_channels: int, path: Path) -> list[Case]:
    ending = spec.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DataError(f"{path}: 'file_ending' must be given, e.g. \".nii.gz\"")
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found")
    labels = {p.name[: -len(ending)]: p for p in sorted(labels_dir.iterdir()) if p.name.endswith(ending)}
    images: dict[str, dict[int, Path]] = {}
    for p in sorted(images_dir.iterdir()):
        if not p.name.endswith(ending):
            continue
        stem = p.name[: -len(ending)]
        case, _, channel = stem.rpartition("_")
        if not case or len(channel) != 4 or not channel.isdigit():
            raise DataError(f"{p}: expected <case>_<XXXX>{ending} (XXXX: the channel, 0000...)")
        images.setdefault(case, {})[int(channel)] = p
    if not labels:
        raise DataError(f"{labels_dir}: no label files ending in {ending}")
    for case in sorted(set(images) - set(labels)):
        raise DataError(f"{next(iter(images[case].values()))}: no label {case}{ending} in {labels_dir}")
    cases = []
    for case, label in labels.items():
        found = images.get(case, {})
        missing = [c for c in range(n_channels) if c not in found]
        if missing:
            raise DataError(f"{label}: case {case} lacks channel file {case}_{missing[0]:04d}{ending} in {images_dir}")
        extra = sorted(set(found) - set(range(n_channels)))
        if extra:
            raise DataError(f"{found[extra[0]]}: channel {extra[0]} is not among dataset.json's "
                            f"{n_channels} channel_names")
        cases.append(Case(case, [found[c] for c in range(n_channels)], label))
    return cases


def _msd_cases(root: Path, spec: dict, path: Path) -> list[Case]:
    entries = spec["training"]
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: 'training' must be a non-empty list of {{image, label}}")
    cases = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"image", "label"} <= set(entry):
            raise DataError(f"{path}: each 'training' entry needs 'image' and 'label'")
        image, label = root / entry["image"], root / entry["label"]
        for file in (image, label):
            if not file.is_file():
                raise DataError(f"{file}: listed in {path} but not found")
        cases.append(Case(_case_id(image), [image], label))
    return cases


def _case_id(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@contextmanager
def quiet_nibabel() -> Iterator[None]:
    """Silence nibabel's header warnings (printed to stderr) for the block; bad files become ``DataError``s."""
    quiet = logging.getLogger("nibabel.global")
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        yield
    finally:
        quiet.level = level


def _read(path: Path):  # noqa: ANN202 (nibabel image)
    import nibabel as nib

    with quiet_nibabel():
        try:
            return nib.load(path)
        except Exception as err:  # nibabel raises several types for broken files
            raise DataError(f"{path}: not a readable NIfTI file ({err})") from None


def _canonical(image, path: Path) -> np.ndarray:  # noqa: ANN001 (nibabel image)
    """The voxels of ``image`` in the closest RAS+ orientation (a 4th axis, channels, is kept)."""
    import nibabel as nib

    try:
        return np.asanyarray(nib.as_closest_canonical(image).dataobj)
    except Exception as err:
        raise DataError(f"{path}: the NIfTI data cannot be read ({err})") from None


def ct_channels(dataset: NiftiDataset) -> list[int]:
    """The channels nnU-Net normalises as CT: those named ``CT`` in ``dataset.json``."""
    return [k for k, name in enumerate(dataset.channels) if name.strip().lower() == "ct"]


def ct_windows(dataset: NiftiDataset, cases: int = 32, per_case: int = 20_000, seed: int = 0) -> dict[int, Window]:
    """For each CT channel, the 0.5th..99.5th percentile of foreground voxels over (up to ``cases``) cases."""
    channels = ct_channels(dataset)
    if not channels:
        return {}
    rng = np.random.default_rng(seed)
    samples: dict[int, list[np.ndarray]] = {k: [] for k in channels}
    for case in dataset.cases[:: max(1, -(-len(dataset.cases) // cases))]:
        foreground = _canonical(_read(case.label), case.label) > 0
        for k in channels:
            voxels = _channel(dataset, case, k)[foreground]
            voxels = voxels[np.isfinite(voxels)]
            samples[k].append(rng.choice(voxels, min(per_case, len(voxels)), replace=False) if len(voxels) else voxels)
    windows = {}
    for k in channels:
        values = np.concatenate(samples[k])
        if not len(values):
            raise DataError(f"{dataset.root}: no labelled voxels to set the CT window of channel {k} from")
        lo, hi = np.percentile(values, WINDOW)
        windows[k] = (float(lo), float(hi))
    return windows


def _channel(dataset: NiftiDataset, case: Case, k: int) -> np.ndarray:
    """Channel ``k`` of a case in RAS+ order."""
    path = case.images[k] if len(case.images) > 1 else case.images[0]
    voxels = _canonical(_read(path), path)
    return voxels[..., k] if voxels.ndim == 4 else voxels


def load_case(dataset: NiftiDataset, case: Case, channels: int, windows: dict[int, Window] | None = None,
              axis: str = "axial") -> tuple[np.ndarray, np.ndarray]:
    """``(images (S, H, W, channels) uint8, masks (S, H, W) class indices)``: slices of one case along ``axis``.

    ``windows`` maps a channel to its fixed intensity window (CT); other channels use their own percentiles.
    """
    label_image = _read(case.label)
    if len(label_image.shape) != 3:
        raise DataError(f"{case.label}: a {len(label_image.shape)}-D label map; labels must be 3-D")
    planes = []
    for path in case.images:
        image = _read(path)
        spatial = image.shape[:3]
        if spatial != label_image.shape:
            raise DataError(f"{path}: shape {spatial} differs from its label {case.label.name} {label_image.shape}")
        if not np.allclose(image.affine, label_image.affine, atol=AFFINE_TOLERANCE):
            raise DataError(f"{path}: its affine (voxel to mm) differs from its label {case.label.name}'s")
        voxels = _canonical(image, path)
        planes += [voxels] if voxels.ndim == 3 else [voxels[..., k] for k in range(voxels.shape[3])]
    if len(planes) != len(dataset.channels):
        raise DataError(f"{case.images[0]}: {len(planes)} channels; dataset.json lists {len(dataset.channels)}")
    if channels != len(planes):
        raise DataError(f"{dataset.root}: cases have {len(planes)} channels but the model takes {channels}")
    label = _canonical(label_image, case.label)
    if not np.all(np.isfinite(label)) or not np.array_equal(label, np.round(label)):
        raise DataError(f"{case.label}: label values must be integers")
    values = set(np.unique(label).astype(int).tolist())
    unknown = sorted(values - set(dataset.labels.values()))
    if unknown:
        raise DataError(f"{case.label}: label value {unknown[0]} is not in dataset.json's labels {dataset.labels}")
    try:
        images = np.stack([radiological_slices(to_uint8(p, (windows or {}).get(k)), axis)
                           for k, p in enumerate(planes)], axis=-1)
    except DataError as err:
        raise DataError(f"{case.images[0]}: {err}") from None
    return np.ascontiguousarray(images), np.ascontiguousarray(radiological_slices(label.astype(np.uint8), axis))


@dataclass
class Selection:
    """What both NIfTI loaders (in memory here, on disk in ``core.data.cache``) decode: the cases asked for,
    with the channel count and the CT windows resolved."""

    dataset: NiftiDataset
    cases: list[Case]
    channels: int
    windows: dict[int, Window]

    @classmethod
    def of(cls, dataset: NiftiDataset, volumes: Collection[str] | None, channels: int | None,
           windows: dict[int, Window] | None) -> "Selection":
        cases = [c for c in dataset.cases if volumes is None or c.id in volumes]
        if not cases:
            raise DataError(f"{dataset.root}: none of the {len(volumes or ())} requested cases are here")
        return cls(dataset, cases, channels or len(dataset.channels), ct_windows(dataset) if windows is None else windows)

    def decode(self, case: Case, size: int | None, axis: str) -> tuple[np.ndarray, np.ndarray]:
        """One case's slices along ``axis``, resized to ``size``: ``(images (S, H, W, C), masks (S, H, W))``."""
        images, masks = load_case(self.dataset, case, self.channels, self.windows, axis)
        pairs = [resize_pair(i, m, size) for i, m in zip(images, masks)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def check_shapes(root: Path, shapes: Collection[tuple[int, ...]]) -> None:
    if len(set(shapes)) > 1:
        raise DataError(f"{root}: cases have different slice shapes {sorted(set(shapes))[:3]}; "
                        "pass a size to resize them")


def load_nifti_dataset(root: str | Path | NiftiDataset, size: int | None = None, channels: int | None = None,
                       volumes: Collection[str] | None = None, windows: dict[int, Window] | None = None,
                       axis: str = "axial") -> SliceSet:
    """Decode the cases (those in ``volumes``, if given) into a ``SliceSet`` of slices along ``axis``.

    Slices are resized to ``size x size``; without a size, every case must have the same in-plane
    shape. ``windows`` are the CT windows (default: ``ct_windows`` of the dataset).
    """
    chosen = Selection.of(root if isinstance(root, NiftiDataset) else read_dataset(root), volumes, channels, windows)
    cases = chosen.cases
    with ThreadPoolExecutor(max_workers=2) as pool:  # the bar: for 8 cases or more, on a terminal (None)
        decoded = list(tqdm(pool.map(lambda case: chosen.decode(case, size, axis), cases), total=len(cases),
                            desc="decoding NIfTI cases", unit="case", leave=False, disable=len(cases) < 8 or None))
    check_shapes(chosen.dataset.root, [d[0].shape[1:] for d in decoded])
    return SliceSet(
        np.concatenate([d[0] for d in decoded]), np.concatenate([d[1] for d in decoded]),
        [c.id for c, d in zip(cases, decoded) for _ in range(len(d[0]))],
        [f"{c.id}_{k + 1}" for c, d in zip(cases, decoded) for k in range(len(d[0]))],
    )


def label_slices(root: str | Path, limit: int = 400, axis: str = "axial") -> list[np.ndarray]:
    """Up to ``limit`` label slices along ``axis``, spread over the cases: what ``core.data.resolution`` needs.

    One label map is in memory at a time, so this stays small for datasets larger than memory.
    """
    dataset = read_dataset(root)
    per_case = max(1, limit // len(dataset.cases))
    masks = []
    for case in dataset.cases:
        slices = radiological_slices(_canonical(_read(case.label), case.label).astype(np.uint8), axis)
        masks += [slices[k].copy() for k in np.linspace(0, len(slices) - 1, min(per_case, len(slices))).astype(int)]
    return masks[:limit]
