"""In-memory staging of a session's saves, shared by the zarr and HDF5 savers.

Appended rows go into one preallocated buffer (a copy per save, no list of
small arrays to concatenate later). Updates are kept as they came and merged
at flush: later writes to a row win, and rows are grouped by chunk so each
touched chunk is read and written once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


class RowStager:
    """A growable row buffer: ``add`` copies rows in, ``take`` hands the oldest ones out.

    Example:
        >>> s = RowStager((2,), np.dtype("f4"), capacity=4)
        >>> s.add(np.ones((3, 2), "f4")); len(s)
        3
        >>> s.view(2).shape, len(s.consume(2))
        ((2, 2), 1)
    """

    def __init__(self, row_shape: tuple[int, ...], dtype: np.dtype, capacity: int) -> None:
        self.row_shape = row_shape
        self.dtype = dtype
        self._buffer = np.empty((max(1, capacity), *row_shape), dtype=dtype)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._count * self._buffer[0].nbytes

    def add(self, rows: np.ndarray) -> None:
        n = rows.shape[0]
        if self._count + n > self._buffer.shape[0]:
            grown = np.empty(
                (max(2 * self._buffer.shape[0], self._count + n), *self.row_shape), self.dtype
            )
            grown[: self._count] = self._buffer[: self._count]
            self._buffer = grown
        self._buffer[self._count : self._count + n] = rows
        self._count += n

    def view(self, n: int | None = None) -> np.ndarray:
        """The oldest ``n`` staged rows (all by default), without copying."""
        return self._buffer[: self._count if n is None else n]

    def consume(self, n: int) -> RowStager:
        """Drop the oldest ``n`` rows (they have been written)."""
        rest = self._count - n
        if rest:
            self._buffer[:rest] = self._buffer[n : self._count]
        self._count = rest
        return self

    def clear(self) -> None:
        self._count = 0


@dataclass
class ChunkUpdate:
    """The merged updates of one chunk: rows ``positions`` (absolute) get ``rows``."""

    chunk: int
    positions: np.ndarray
    rows: np.ndarray


class UpdateStager:
    """Updates waiting for flush; ``by_chunk`` merges them (last write to a row wins).

    Example:
        >>> u = UpdateStager()
        >>> u.add(np.array([5, 1]), np.array([[5.0], [1.0]]))
        >>> u.add(np.array([5]), np.array([[9.0]]))
        >>> [(c.chunk, c.positions.tolist(), c.rows.ravel().tolist()) for c in u.by_chunk(4)]
        [(0, [1], [1.0]), (1, [5], [9.0])]
    """

    def __init__(self) -> None:
        self._positions: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self.nbytes = 0
        self.max_position = -1

    def __bool__(self) -> bool:
        return bool(self._positions)

    def add(self, positions: np.ndarray, rows: np.ndarray) -> None:
        if positions.size == 0:
            return
        # Copy: the caller may reuse its array after save() returns.
        self._positions.append(np.array(positions, dtype=np.int64, copy=True))
        self._rows.append(np.array(rows, copy=True))
        self.nbytes += rows.nbytes + positions.nbytes
        self.max_position = max(self.max_position, int(positions.max()))

    def clear(self) -> None:
        self._positions.clear()
        self._rows.clear()
        self.nbytes = 0
        self.max_position = -1

    def by_chunk(self, row_chunk: int) -> Iterator[ChunkUpdate]:
        """The merged updates, one entry per touched chunk, in chunk order."""
        if not self._positions:
            return
        positions = np.concatenate(self._positions)
        rows = np.concatenate(self._rows)
        # A stable sort keeps save order among equal positions; the last one wins.
        order = np.argsort(positions, kind="stable")
        positions = positions[order]
        keep = np.ones(positions.shape[0], dtype=bool)
        keep[:-1] = positions[1:] != positions[:-1]
        positions = positions[keep]
        rows = rows[order[keep]]
        chunks = positions // row_chunk
        starts = np.flatnonzero(np.r_[True, chunks[1:] != chunks[:-1]])
        ends = np.r_[starts[1:], positions.shape[0]]
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            yield ChunkUpdate(int(chunks[a]), positions[a:b], rows[a:b])


__all__ = ["ChunkUpdate", "RowStager", "UpdateStager"]
