"""Slices kept on disk in ``.npy`` files and read one at a time: a dataset larger than memory, as an array."""
from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class SliceStore:
    """Rows ``(N, *slice_shape)`` of uint8 stored in ``.npy`` files (one per volume), read on demand.

    It answers what ``SliceSet`` asks of an array: ``len``, ``shape``, ``store[i]`` (one slice),
    ``store[rows]`` (those slices, stacked: one volume's, say) and ``take(rows)`` (a lazy subset).
    Slices are read with ``pread`` into fresh arrays, so the process holds only what it asked for
    (no file pages mapped into it); ``areas`` are the foreground pixels per slice, kept beside it.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> np.save(folder / "a.npy", np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))
        >>> np.save(folder / "b.npy", np.full((1, 3, 4), 7, np.uint8))
        >>> store = SliceStore([folder / "a.npy", folder / "b.npy"], [2, 1], (3, 4))
        >>> store.shape, int(store[1][0, 0]), int(store[2][2, 3])
        ((3, 3, 4), 12, 7)
        >>> subset = store.take([2, 0])
        >>> subset.shape, int(subset[np.array([0, 1])].sum())
        ((2, 3, 4), 150)
    """

    def __init__(self, files: Sequence[str | Path], counts: Sequence[int], slice_shape: Sequence[int],
                 areas: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        self.files = [str(f) for f in files]
        self.slice_shape = tuple(int(s) for s in slice_shape)
        self.offsets = [_data_offset(f) for f in self.files]
        counts = [int(c) for c in counts]
        total = sum(counts)
        self._file = np.repeat(np.arange(len(self.files)), counts)
        self._row_in_file = np.arange(total) - np.repeat(np.cumsum([0, *counts[:-1]]), counts)
        self._areas = np.zeros(total, np.int64) if areas is None else np.asarray(areas, np.int64)
        self.rows = np.arange(total) if rows is None else np.asarray(rows, np.int64)

    dtype = np.dtype(np.uint8)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.slice_shape)

    @property
    def areas(self) -> np.ndarray:
        """Foreground (non-zero) pixels of each slice."""
        return self._areas[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, indices: Sequence[int], axis: int = 0) -> "SliceStore":
        """The rows ``indices``, still on disk (``numpy.take``'s signature, so ``SliceSet`` needs no branch)."""
        if axis != 0:
            raise ValueError("a SliceStore is taken along its first axis only")
        subset = copy.copy(self)
        subset.rows = self.rows[np.asarray(indices, np.int64)]
        return subset

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._read(int(self.rows[key]))
        rows = self.rows[key]
        out = np.empty((len(rows), *self.slice_shape), self.dtype)
        for k, row in enumerate(rows):
            out[k] = self._read(int(row))
        return out

    def _read(self, row: int) -> np.ndarray:
        out = np.empty(self.slice_shape, self.dtype)
        f = int(self._file[row])
        fd = os.open(self.files[f], os.O_RDONLY)
        try:
            done = os.preadv(fd, [memoryview(out).cast("B")], self.offsets[f] + int(self._row_in_file[row]) * out.nbytes)
        finally:
            os.close(fd)
        if done != out.nbytes:
            raise OSError(f"{self.files[f]}: truncated (slice {self._row_in_file[row]} is past its end)")
        return out


def _data_offset(path: str) -> int:
    """Where an ``.npy`` file's array data starts (after its header)."""
    with open(path, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        _, fortran_order, dtype = read_header(fh)
        if fortran_order or dtype != np.uint8:
            raise ValueError(f"{path}: expected a C-ordered uint8 array, found {dtype}{' (Fortran order)' * fortran_order}")
        return fh.tell()
