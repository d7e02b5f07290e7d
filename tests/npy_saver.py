"""A small Saver kept in .npy chunk files: the reference implementation of the Saver contract.

It is how a user writes their own Saver for TaskManager: ``save`` plus the
optional runner hooks (``__len__``, ``row_chunk``, ``reserve``, ``clone``,
records). Layout: ``meta.json`` (shape, dtype), ``chunk.<i>.npy`` of
``row_chunk`` rows each, ``records/<name>.json``. Every file is replaced
atomically, ``meta.json`` last, so a SIGKILL never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from zsaver import Saver
from zsaver.errors import RowIndexError, ShapeMismatchError
from zsaver.savers.base import normalize_approach


def _replace(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class NpySaver(Saver):
    """Rows in ``row_chunk``-row .npy files under ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], approach: str = "append", row_chunk: int = 64) -> None:
        self.directory = Path(directory)
        self.approach = normalize_approach(approach)
        self._row_chunk = row_chunk
        self._fresh = self.approach == "overwrite"  # the first save replaces the dataset

    # --- the dataset -----------------------------------------------------------

    def _meta(self) -> dict[str, Any] | None:
        path = self.directory / "meta.json"
        if not path.exists():
            return None
        meta = json.loads(path.read_text())
        self._row_chunk = meta["row_chunk"]  # an existing dataset keeps its chunking
        return meta

    def _write_meta(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        doc = json.dumps({"shape": list(shape), "dtype": dtype.str, "row_chunk": self._row_chunk})
        _replace(self.directory / "meta.json", lambda f: f.write(doc.encode()))

    def _chunk(self, i: int, row_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        path = self.directory / f"chunk.{i}.npy"
        if path.exists():
            return np.load(path)
        return np.zeros((self._row_chunk, *row_shape), dtype=dtype)

    def _put(self, first: int, rows: np.ndarray) -> None:
        c = self._row_chunk
        pos = 0
        while pos < len(rows):
            row = first + pos
            i, offset = divmod(row, c)
            n = min(c - offset, len(rows) - pos)
            chunk = self._chunk(i, rows.shape[1:], rows.dtype)
            chunk[offset : offset + n] = rows[pos : pos + n]
            _replace(self.directory / f"chunk.{i}.npy", lambda f, a=chunk: np.save(f, a))
            pos += n

    def read(self) -> np.ndarray:
        """The whole dataset as one array."""
        meta = self._meta()
        if meta is None:
            return np.zeros((0,))
        shape, dtype = tuple(meta["shape"]), np.dtype(meta["dtype"])
        n_chunks = -(-shape[0] // self._row_chunk)
        parts = [self._chunk(i, shape[1:], dtype) for i in range(n_chunks)]
        return np.concatenate(parts)[: shape[0]] if parts else np.zeros(shape, dtype)

    # --- the Saver contract --------------------------------------------------------

    def save(self, data: Any, indices: Any = None, **kwargs: Any) -> None:
        rows = np.asarray(data)
        if rows.ndim == 0:
            raise ShapeMismatchError("data must have at least one dimension (rows)")
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._fresh:
            for path in self.directory.glob("chunk.*.npy"):
                path.unlink()
            (self.directory / "meta.json").unlink(missing_ok=True)
            self._fresh = False
        meta = self._meta()
        if meta is not None and tuple(meta["shape"][1:]) != rows.shape[1:]:
            raise ShapeMismatchError(f"rows of shape {rows.shape[1:]}, the dataset has {tuple(meta['shape'][1:])}")
        dtype = np.dtype(meta["dtype"]) if meta else rows.dtype
        length = meta["shape"][0] if meta else 0
        if self.approach == "update":
            if not isinstance(indices, slice):
                raise TypeError("this reference saver updates by slice only")
            start, stop, _ = indices.indices(length)
            if stop - start != len(rows) or indices.stop > length:
                raise RowIndexError(f"rows {indices.start}..{indices.stop} outside the {length}-row dataset")
            self._put(start, rows.astype(dtype, copy=False))
            return
        self._put(length, rows.astype(dtype, copy=False))
        self._write_meta((length + len(rows), *rows.shape[1:]), dtype)  # last: the new rows exist now

    def __len__(self) -> int:
        meta = self._meta()
        return meta["shape"][0] if meta else 0

    @property
    def row_chunk(self) -> int | None:
        return self._row_chunk

    def reserve(self, n_rows: int, row_shape: tuple[int, ...], dtype: Any) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = self._meta()
        if meta is None or meta["shape"][0] < n_rows:
            dt = np.dtype(meta["dtype"]) if meta else np.dtype(dtype)
            self._write_meta((n_rows, *row_shape), dt)

    def clone(self, approach: str | None = None) -> NpySaver:
        return NpySaver(self.directory, approach or self.approach, self._row_chunk)

    @property
    def supports_records(self) -> bool:
        return True

    def read_record(self, name: str) -> dict[str, Any] | None:
        path = self.directory / "records" / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def write_record(self, name: str, doc: dict[str, Any] | None) -> None:
        path = self.directory / "records" / f"{name}.json"
        if doc is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(doc).encode()
        _replace(path, lambda f: f.write(text))

    def destroy(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
