"""HDF5Saver: the same approaches and sessions on an h5py resizable dataset.

HDF5 keeps no journal: a process killed while the file is open for writing can
leave the file unreadable, earlier data included. So this saver stages a
session's saves in memory and opens the file only to flush (under a lock file
next to it, which also serialises writers from several processes). A kill
between flushes leaves the file exactly as the last flush left it; a kill
*during* a flush may corrupt the file.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from zsaver._filelock import FileLock
from zsaver.errors import (
    DatasetNotFoundError,
    DatasetSpecError,
    DTypeMismatchError,
    SaverOptionError,
    ShapeMismatchError,
    ZsaverError,
)
from zsaver.savers._records import check_record_name, read_sidecar, write_sidecar
from zsaver.savers._session import DatasetSpec, StagedSaver
from zsaver.savers._validation import (
    check_chunks,
    check_options,
    default_row_chunk,
)

CREATE_OPTIONS = frozenset(
    {
        "dtype",
        "chunks",
        "compression",
        "compression_opts",
        "shuffle",
        "fletcher32",
        "fill_value",
        "attributes",
    }
)
OPTIONS = CREATE_OPTIONS | {"shape", "allow_resize", "open_timeout"}

#: Seconds a flush waits for another process's HDF5 lock on the file (a reader).
DEFAULT_OPEN_TIMEOUT = 60.0

#: numpy dtype kinds h5py has no HDF5 type for, and what to do instead.
_NO_HDF5_TYPE = {
    "U": "HDF5 has no fixed-width Unicode type; store the text as UTF-8 bytes "
         "(np.char.encode(rows, 'utf-8'), dtype 'S<n>') or use ZarrSaver",
    "T": "HDF5 has no type for numpy's variable-width strings; store the text as UTF-8 "
         "bytes (dtype 'S<n>') or use ZarrSaver",
    "M": "h5py has no datetime type; store rows.view('i8') (with the unit in an "
         "attribute) or use ZarrSaver",
    "m": "h5py has no timedelta type; store rows.view('i8') (with the unit in an "
         "attribute) or use ZarrSaver",
    "O": "HDF5Saver stores numbers, bytes and records, not Python objects",
}

#: Staged appended rows are written once they hold this many bytes.
WRITE_STAGE_BYTES = 64 << 20

_probe_names = itertools.count()


class HDF5Saver(StagedSaver):
    """Persist rows into a resizable HDF5 dataset, by append, overwrite or update.

    ``options``: dtype, chunks (rows or a full chunk shape), compression,
    compression_opts, shuffle, fletcher32, fill_value, attributes, plus
    ``shape`` and ``allow_resize`` as for :class:`~zsaver.ZarrSaver`; ``open_timeout``
    (seconds, default 60): how long a flush waits while another process holds the
    file open (HDF5's own lock) before it raises ``BlockingIOError``.
    Text (numpy ``U``), datetime and timedelta dtypes have no HDF5 type and are
    refused with ``DTypeMismatchError`` before anything is written.

    Example:
        >>> import numpy as np, tempfile, os, h5py
        >>> path = os.path.join(tempfile.mkdtemp(), "r.h5")
        >>> with HDF5Saver(path, "runs/result", compression="gzip") as s:
        ...     s.save(np.zeros((5, 2)))
        >>> h5py.File(path)["runs/result"].shape
        (5, 2)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dataset_name: str = "dataset",
        approach: str = "append",
        **options: Any,
    ) -> None:
        check_options(options, OPTIONS, "HDF5Saver")
        if not isinstance(dataset_name, str) or not dataset_name.strip("/"):
            raise ValueError(f"dataset_name must be a non-empty string; got {dataset_name!r}")
        self.path = Path(os.fspath(path))
        self.dataset_name = self.name = dataset_name.strip("/")
        self._options = dict(options)
        timeout = self._options.get("open_timeout", DEFAULT_OPEN_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise SaverOptionError(f"HDF5Saver: open_timeout= expects seconds >= 0; got {timeout!r}")
        self._open_timeout = float(timeout)
        if "dtype" in self._options:
            try:
                option_dtype = np.dtype(self._options["dtype"])
            except (TypeError, ValueError):
                pass  # h5py's dry run names the bad option at the first save
            else:
                self._refuse_dtype(option_dtype, "the dtype= option")
        self._max_rows: int | None = None  # of the dataset adopted last; None: no limit
        super().__init__(
            approach,
            allow_resize=self._options.pop("allow_resize", False),
            create_shape=self._options.pop("shape", None),
        )

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.dataset_name,
            "approach": self.approach,
            "options": dict(
                self._options, allow_resize=self.allow_resize, shape=self._create_shape
            ),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["name"], state["approach"], **state["options"])  # type: ignore[misc]

    def clone(self, approach: str | None = None) -> HDF5Saver:
        """A fresh saver on the same dataset (for worker processes)."""
        return HDF5Saver(
            self.path,
            self.dataset_name,
            approach or self.approach,
            allow_resize=self.allow_resize,
            shape=self._create_shape,
            **self._options,
        )

    def __repr__(self) -> str:
        return f"HDF5Saver({str(self.path)!r}, {self.dataset_name!r}, approach={self.approach!r})"

    # --- file access: always under the lock file ---------------------------------

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".zsaver-lock")

    @contextlib.contextmanager
    def _file(self, mode: str) -> Iterator[h5py.File]:
        with FileLock(self.lock_path):
            f = self._open(mode)
            with f:
                yield f

    def _refuse_dtype(self, dtype: np.dtype, whose: str) -> None:
        if dtype.kind in _NO_HDF5_TYPE:
            raise DTypeMismatchError(
                f"dataset {self.dataset_name!r}: {whose} has dtype {dtype}, which HDF5Saver cannot "
                f"store: {_NO_HDF5_TYPE[dtype.kind]}"
            )

    def _open(self, mode: str) -> h5py.File:
        """Open the file, waiting up to ``open_timeout`` while another process holds HDF5's lock."""
        deadline = time.monotonic() + self._open_timeout
        pause = 0.05
        while True:
            try:
                return h5py.File(self.path, mode)
            except BlockingIOError as exc:  # HDF5's file lock: a reader in another process
                if time.monotonic() + pause > deadline:
                    raise BlockingIOError(
                        errno.EAGAIN,
                        f"{self.path}: another process has the file open (HDF5 file locking) and "
                        f"kept it open for the {self._open_timeout:g} s open_timeout; close it, or "
                        "read with HDF5_USE_FILE_LOCKING=FALSE set in the reader's environment, "
                        "then flush again (the staged rows are kept)",
                    ) from exc
                time.sleep(pause)
                pause = min(2 * pause, 1.0)
            except OSError as exc:
                readable = self.path.is_file() and os.access(self.path, os.R_OK)
                if readable and not h5py.is_hdf5(self.path):
                    raise DatasetSpecError(
                        f"{self.path}: expected an HDF5 file, found a file of another kind"
                    ) from exc
                if "already open" in str(exc):
                    raise OSError(
                        f"{self.path}: this process already has the file open (read-only, for "
                        f"example with h5py.File); close it before the saver flushes ({exc})",
                    ) from exc
                raise

    def _dataset(self, f: h5py.File) -> h5py.Dataset | None:
        parts = self.dataset_name.strip("/").split("/")
        for depth in range(1, len(parts)):
            parent = f.get("/".join(parts[:depth]))
            if isinstance(parent, h5py.Dataset):
                raise ShapeMismatchError(
                    f"dataset {self.dataset_name!r} in {self.path.name}: {'/'.join(parts[:depth])!r} "
                    "is a dataset, so nothing can be stored below it; expected groups on the path"
                )
        node = f.get(self.dataset_name)
        if node is None:
            return None
        if not isinstance(node, h5py.Dataset) or node.ndim == 0:
            raise ShapeMismatchError(
                f"dataset {self.dataset_name!r} in {self.path.name}: expected a dataset with a "
                f"row axis; found {node!r}"
            )
        return node

    def _adopt(self, ds: h5py.Dataset) -> None:
        row_chunk = ds.chunks[0] if ds.chunks else max(1, ds.shape[0])
        self._spec = DatasetSpec(np.dtype(ds.dtype), tuple(ds.shape[1:]), int(row_chunk))
        self._length = ds.shape[0]
        self._max_rows = ds.maxshape[0]

    def _check_room(self, n_rows: int) -> None:
        """Refuse, before anything is written, to grow past what the dataset can hold."""
        limit = self._max_rows
        if limit is not None and n_rows > limit:
            raise DatasetSpecError(
                f"dataset {self.dataset_name!r} in {self.path.name} cannot grow to {n_rows} rows: it "
                f"was created with maxshape {(limit, *self._spec.row_shape) if self._spec else limit} "
                "(HDF5Saver creates datasets with an unlimited first axis)"
            )

    def _prepare_rows(self, arr: np.ndarray) -> np.ndarray:
        rows = super()._prepare_rows(arr)
        self._check_room(len(self) + len(rows))
        return rows

    def _prepare_update(self, arr: np.ndarray, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        positions, rows = super()._prepare_update(arr, indices)
        if positions.size:
            self._check_room(int(positions.max()) + 1)  # at save(), not when a flush comes
        return positions, rows

    def _open_spec(self) -> bool:
        if not self.path.exists():
            return False
        with self._file("r") as f:
            ds = self._dataset(f)
            if ds is None:
                return False
            self._adopt(ds)
            return True

    def _disk_length(self) -> int | None:
        if not self.path.exists():
            return None
        with self._file("r") as f:
            ds = self._dataset(f)
            return None if ds is None else ds.shape[0]

    def _creation_kwargs(self, shape: tuple[int, ...], data_dtype: np.dtype) -> dict[str, Any]:
        kwargs = {k: v for k, v in self._options.items() if k not in ("attributes", "open_timeout")}
        dtype = np.dtype(kwargs.pop("dtype", data_dtype))
        if "dtype" not in self._options:  # a dtype= option was judged when the saver was made
            self._refuse_dtype(dtype, "the data")
        # h5py would read chunks=True as "auto" and truncate 2.5: refuse both.
        chunks = check_chunks(kwargs.pop("chunks", None), self.dataset_name, auto=False)
        if chunks is None:
            chunks = default_row_chunk(shape[1:], dtype)
        if isinstance(chunks, int):
            chunks = (chunks, *shape[1:])
        if "fill_value" in kwargs:
            kwargs["fillvalue"] = kwargs.pop("fill_value")
        return dict(kwargs, dtype=dtype, chunks=tuple(chunks), maxshape=(None, *shape[1:]))

    def _make(
        self, f: h5py.File, shape: tuple[int, ...], data_dtype: np.dtype, fill: bool = True
    ) -> h5py.Dataset:
        kwargs = self._creation_kwargs(shape, data_dtype)
        if not fill:
            kwargs.pop("fillvalue", None)
        ds = f.create_dataset(self.dataset_name, shape=shape, **kwargs)
        for key, value in (self._options.get("attributes") or {}).items():
            ds.attrs[key] = value
        return ds

    def _dry_run(self, shape: tuple[int, ...], data_dtype: np.dtype, fill: bool) -> DatasetSpec:
        """The dataset the creation options make, in an in-memory HDF5 file: h5py checks
        every option, no byte hits disk."""
        probe = f"zsaver-probe-{os.getpid()}-{next(_probe_names)}"
        try:
            with h5py.File(probe, "w", driver="core", backing_store=False) as f:
                ds = self._make(f, shape, data_dtype, fill=fill)
                return DatasetSpec(np.dtype(ds.dtype), tuple(shape[1:]), int(ds.chunks[0]))
        except ZsaverError:  # ours, already naming the option or the dtype
            raise
        except Exception as exc:  # any refusal of the dry run means unusable options
            raise DatasetSpecError(
                f"dataset {self.dataset_name!r}: h5py refuses the creation options "
                f"{self._options} for shape {shape}: {exc}"
            ) from exc

    def _create(self, shape: tuple[int, ...], data_dtype: np.dtype, replace: bool) -> None:
        with self._file("a") as f:
            ds = self._dataset(f)
            if ds is not None and not replace:
                self._adopt(ds)
                return
            if ds is not None:
                del f[self.dataset_name]
                shutil.rmtree(self._records_dir, ignore_errors=True)
            self._adopt(self._make(f, shape, data_dtype))

    @property
    def _batch_rows(self) -> int:
        assert self._spec is not None
        row_bytes = max(1, self._spec.dtype.itemsize * int(np.prod(self._spec.row_shape)))
        return max(self._spec.row_chunk, WRITE_STAGE_BYTES // row_bytes)

    # --- writing --------------------------------------------------------------------

    def _open_for_write(self, f: h5py.File) -> h5py.Dataset:
        ds = self._dataset(f)
        if ds is None:
            raise DatasetNotFoundError(
                f"dataset {self.dataset_name!r} was deleted while being written"
            )
        assert self._spec is not None
        if (np.dtype(ds.dtype), tuple(ds.shape[1:])) != (self._spec.dtype, self._spec.row_shape):
            # h5py would cast silently: refuse rather than store changed values.
            raise DatasetSpecError(
                f"dataset {self.dataset_name!r} was replaced by another writer: it now has "
                f"dtype {ds.dtype} and rows of shape {ds.shape[1:]}; staged data has dtype "
                f"{self._spec.dtype} and rows of shape {self._spec.row_shape}"
            )
        return ds

    def _release(self) -> None:
        self._spec = None  # the next session looks at the file again

    def _write_rows(self, final: bool) -> None:
        assert self._rows is not None
        count = len(self._rows)
        with self._file("a") as f:
            ds = self._open_for_write(f)
            start = ds.shape[0]
            ds.resize(start + count, axis=0)
            ds[start:] = self._rows.view(count)
            self._length = start + count
        self._rows.consume(count)

    def _grow_to(self, n_rows: int) -> None:
        self._check_room(n_rows)
        with self._file("a") as f:
            ds = self._open_for_write(f)
            if ds.shape[0] < n_rows:
                ds.resize(n_rows, axis=0)
            self._length = ds.shape[0]

    def _write_updates(self) -> None:
        assert self._spec is not None
        chunk = self._spec.row_chunk
        self._check_room(self._updates.max_position + 1)
        with self._file("a") as f:
            ds = self._open_for_write(f)
            end = max(ds.shape[0], self._updates.max_position + 1)
            if end > ds.shape[0]:
                ds.resize(end, axis=0)  # HDF5 shows the fill value in the new rows
            for group in self._updates.by_chunk(chunk):
                a, b = group.chunk * chunk, min((group.chunk + 1) * chunk, end)
                if group.positions.size == b - a:
                    block = np.empty((b - a, *self._spec.row_shape), self._spec.dtype)
                else:
                    block = ds[a:b]
                block[group.positions - a] = group.rows
                ds[a:b] = block
            self._length = end
        self._updates.clear()

    # --- records: a sidecar directory next to the file ----------------------------

    @property
    def _records_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".zsaver") / self.dataset_name

    @property
    def supports_records(self) -> bool:
        return True

    def read_record(self, name: str) -> dict[str, Any] | None:
        return read_sidecar(self._records_dir / f"{check_record_name(name)}.json")

    def write_record(self, name: str, doc: dict[str, Any] | None) -> None:
        write_sidecar(self._records_dir / f"{check_record_name(name)}.json", doc)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready config: file path, dataset name, approach and creation options.

        Raises :class:`~zsaver.errors.ConfigError` naming an option that has no JSON form.
        """
        from zsaver.savers._configs import hdf5_saver_config  # that module imports this one

        return hdf5_saver_config(self)


__all__ = ["OPTIONS", "HDF5Saver"]
