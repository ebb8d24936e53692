"""Out-of-core NIfTI data: the slice cache gives what decoding in memory gives, is reused while its
sources and settings are unchanged, rebuilds only what changed, and is what training reads."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from core.data import load_source
from core.data.store import SliceStore
from test_nifti_dataset import case_arrays, cli, ct_dataset, msd_dataset, nnunet_dataset, save, train


def cache_files(cache: Path) -> dict[str, int]:
    """Every cached array by name, with its modification time."""
    return {p.name: p.stat().st_mtime_ns for p in cache.glob("*/*.npy")}


@pytest.mark.parametrize("layout", ["nnunet", "msd"])
def test_cached_slices_equal_the_in_memory_ones(tmp_path: Path, layout: str) -> None:
    root = (nnunet_dataset if layout == "nnunet" else msd_dataset)(tmp_path / "data")
    classes = 3 if layout == "nnunet" else 1
    in_memory = load_source(root, size=32, channels=2, num_classes=classes, intensity="volume")
    cached = load_source(root, size=32, channels=2, num_classes=classes, intensity="volume", cache=tmp_path / "cache")
    assert isinstance(cached.images, SliceStore) and isinstance(cached.masks, SliceStore)
    assert cached.images.shape == in_memory.images.shape
    assert np.array_equal(cached.images[np.arange(len(cached))], in_memory.images)
    assert np.array_equal(cached.masks[np.arange(len(cached))], in_memory.masks)
    assert (cached.volumes, cached.names) == (in_memory.volumes, in_memory.names)
    assert np.array_equal(cached.areas, in_memory.areas) and cached.positive.any()
    val = sorted(set(cached.volumes))[-1:]  # a patient-level subset stays on disk, and reads the same rows
    on_disk, in_ram = cached.select_volumes(val), in_memory.select_volumes(val)
    assert isinstance(on_disk.images, SliceStore)
    assert np.array_equal(on_disk.images[np.arange(len(on_disk))], in_ram.images)
    assert np.array_equal(on_disk.images[1], in_ram.images[1])


def test_the_cache_is_reused_and_rebuilt_only_where_sources_or_settings_change(tmp_path: Path) -> None:
    root, cache = nnunet_dataset(tmp_path / "data"), tmp_path / "cache"
    load_source(root, size=32, channels=2, num_classes=3, cache=cache)
    first = cache_files(cache)
    assert len(first) == 8  # 4 cases x (images, masks)
    load_source(root, size=32, channels=2, num_classes=3, cache=cache)
    assert cache_files(cache) == first  # nothing rewritten

    channels, label = case_arrays(1)
    label[:] = 0  # case01 loses its lesion
    save(root / "labelsTr" / "case01.nii.gz", label)
    os.utime(root / "labelsTr" / "case01.nii.gz", ns=(1, 1))
    again = load_source(root, size=32, channels=2, num_classes=3, cache=cache)
    changed = {name for name, mtime in cache_files(cache).items() if first.get(name) != mtime}
    assert changed == {"case01.images.npy", "case01.masks.npy"}
    assert not again.select_volumes(["case01"]).positive.any()

    (next(cache.glob("*/case02.masks.npy"))).unlink()  # a build cut off before this case: only it is redone
    load_source(root, size=32, channels=2, num_classes=3, cache=cache)
    assert len(cache_files(cache)) == 8
    load_source(root, size=16, channels=2, num_classes=3, cache=cache)  # another size: another cache beside
    assert len(list(cache.iterdir())) == 2
    indexes = [json.loads(p.read_text()) for p in cache.glob("*/index.json")]
    assert sorted(i["settings"]["size"] for i in indexes) == [16, 32]
    assert all(sorted(i["cases"]) == [f"case{k:02d}" for k in range(4)] for i in indexes)


def test_training_reads_the_cache_beside_the_run_and_a_second_run_reuses_it(tmp_path: Path) -> None:
    root, runs = ct_dataset(tmp_path / "data"), tmp_path / "runs"
    train(root, runs / "a", "--epochs", 1, "--size", 32)
    built = cache_files(runs / ".cache")
    assert built and all(name.endswith(".npy") for name in built)
    train(root, runs / "b", "--epochs", 1, "--size", 32, "--sampling", "positive")
    assert cache_files(runs / ".cache") == built
    history = [json.loads(line) for line in (runs / "b" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["event"] == "end" and history[-1]["reason"] == "completed"
    train(root, runs / "c", "--epochs", 1, "--size", 32, "--cache", tmp_path / "elsewhere")
    assert cache_files(tmp_path / "elsewhere")

    scores = []  # core.evaluate reads the same slices through the run's cache as decoded into memory
    for extra in ([], ["--cache", runs / ".cache"]):
        out = tmp_path / f"eval{len(extra)}.json"
        result = cli("evaluate", "--checkpoint", runs / "a" / "last.pt", "--data", root, "--split", "all",
                     "--timing-repeats", 1, "--json", out, *extra)
        assert result.returncode == 0, result.stderr[-2000:]
        scores.append({k: v for k, v in json.loads(out.read_text())["levels"]["4"].items() if "dice" in k})
    assert scores[0] == scores[1] and cache_files(runs / ".cache") == built
