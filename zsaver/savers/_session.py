"""What the zarr and HDF5 savers share: approaches, sessions, staging, checks.

A subclass says how to open, plan, create, grow and write its dataset; this
base decides *when*: every check runs before the first write, saves are staged
within a session, and a bare ``save()`` is a session of its own.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from zsaver._casting import can_store, cast_rows
from zsaver.errors import (
    DatasetNotFoundError,
    DatasetSpecError,
    DTypeMismatchError,
    InvalidIndexError,
    RowIndexError,
    SaverClosedError,
    SaverOptionError,
    ShapeMismatchError,
)
from zsaver.savers._staging import RowStager, UpdateStager
from zsaver.savers._validation import (
    as_array,
    check_fill_value,
    check_row_shape,
    is_int,
    is_single_index,
    needs_current_length,
    normalize_indices,
    rows_for_indices,
)
from zsaver.savers.base import Saver, normalize_approach

#: Staged updates are written early once they hold this many bytes.
UPDATE_STAGE_BYTES = 64 << 20


@dataclass(frozen=True)
class DatasetSpec:
    """What a save is checked against: dtype, shape of one row, rows per chunk."""

    dtype: np.dtype
    row_shape: tuple[int, ...]
    row_chunk: int

    def __post_init__(self) -> None:
        if self.row_chunk < 1:
            raise DatasetSpecError(f"chunks must hold at least one row; got {self.row_chunk} rows")


class StagedSaver(Saver):
    """Base of the savers that stage a session's saves in memory."""

    def __init__(self, approach: str, *, allow_resize: bool, create_shape: Any) -> None:
        self.approach = normalize_approach(approach)
        if not isinstance(allow_resize, (bool, np.bool_)):
            raise SaverOptionError(
                f"{type(self).__name__}: allow_resize= expects True or False; got "
                f"{allow_resize!r} ({type(allow_resize).__name__})"
            )
        self.allow_resize = bool(allow_resize)
        self._create_shape = None if create_shape is None else _as_shape(create_shape, type(self).__name__)
        self._init_session_state()

    def _init_session_state(self) -> None:
        self._depth = 0
        self._session = False
        self._replace_pending = False
        self._closed = False
        self._rows: RowStager | None = None
        self._updates = UpdateStager()
        self._spec: DatasetSpec | None = None
        self._length = 0  # rows on disk when last looked at

    # --- what a concrete saver provides ------------------------------------

    #: Name used in error messages.
    name: str
    #: The creation options the saver was made with (its config keeps them).
    _options: dict[str, Any]

    @abc.abstractmethod
    def _open_spec(self) -> bool:
        """Open the existing dataset (set ``_spec`` and ``_length``); False if there is none."""

    def _plan_spec(self, shape: tuple[int, ...], data_dtype: np.dtype) -> DatasetSpec:
        """Check the creation options for ``shape`` without writing anything.

        The fill value is judged as a value against the planned dtype first (zarr
        would store 1.5 as 1 in an int dtype, h5py 300 as 255 in a uint8 one), then
        the backend has its say on it too.
        """
        spec = self._dry_run(shape, data_dtype, fill=False)
        fill_value = self._options.get("fill_value")
        if fill_value is not None:
            check_fill_value(fill_value, spec.dtype, self.name)
            spec = self._dry_run(shape, data_dtype, fill=True)
        return spec

    @abc.abstractmethod
    def _dry_run(self, shape: tuple[int, ...], data_dtype: np.dtype, fill: bool) -> DatasetSpec:
        """The dataset the creation options make for ``shape``, made in memory only
        (with the ``fill_value`` option if ``fill``); DatasetSpecError if they are refused."""

    @abc.abstractmethod
    def _create(self, shape: tuple[int, ...], data_dtype: np.dtype, replace: bool) -> None:
        """Create (or with ``replace``, replace) the dataset; set ``_spec`` and ``_length``.

        If another saver created it meanwhile (and not ``replace``), open that one.
        """

    @abc.abstractmethod
    def _write_rows(self, final: bool) -> None:
        """Append staged rows (only whole chunks unless ``final``)."""

    @abc.abstractmethod
    def _write_updates(self) -> None:
        """Write the staged updates, each touched chunk read and written once."""

    @abc.abstractmethod
    def _grow_to(self, n_rows: int) -> None:
        """Grow the dataset to at least ``n_rows`` rows of fill value."""

    @abc.abstractmethod
    def _disk_length(self) -> int | None:
        """Rows of the dataset as stored now, or None if it does not exist."""

    @property
    @abc.abstractmethod
    def _batch_rows(self) -> int:
        """Staged appended rows that trigger a write."""

    def _release(self) -> None:
        """Drop open handles at the end of a session."""

    # --- sessions ------------------------------------------------------------

    def __enter__(self) -> Self:
        self._check_open()
        if self._depth == 0:
            self._begin()
        self._depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0:
            try:
                self.flush()
            finally:
                self._end()

    def _begin(self) -> None:
        # What runner hooks (row_spec, row_chunk, reserve) looked at outside a session may
        # be stale by now: every session looks at the dataset afresh.
        self._release()
        self._session = True
        self._replace_pending = self.approach == "overwrite"

    def _end(self) -> None:
        self._session = False
        self._replace_pending = False
        self._rows = None
        self._updates.clear()
        self._release()

    def _check_open(self) -> None:
        if self._closed:
            raise SaverClosedError(f"dataset {self.name!r}: the saver has been closed")

    def save(self, data: npt.ArrayLike, indices: Any = None, **kwargs: Any) -> None:
        """Stage ``data`` (in a session) or write it durably (outside one).

        Raises ShapeMismatchError, DTypeMismatchError, RowIndexError,
        DuplicateIndexError, InvalidIndexError or DatasetNotFoundError; then
        nothing has been written.
        """
        if kwargs:
            raise SaverOptionError(
                f"save() takes data and indices only; got keyword(s) {', '.join(sorted(kwargs))}"
            )
        self._check_open()
        if self._session:
            self._stage(data, indices)
            return
        self._begin()
        try:
            self._stage(data, indices)
            self.flush()
        finally:
            self._end()

    def flush(self) -> None:
        """Write everything staged; once this returns it survives a SIGKILL."""
        if self._closed:
            return
        if self._rows is not None and len(self._rows):
            self._write_rows(final=True)
        if self._updates:
            self._write_updates()

    def close(self) -> None:
        """Flush and release the dataset; later saves raise SaverClosedError."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._end()
            self._depth = 0
            self._closed = True

    def __len__(self) -> int:
        if self._spec is None or not self._session:
            return self._disk_length() or 0
        n = self._length + (len(self._rows) if self._rows is not None else 0)
        return max(n, self._updates.max_position + 1)

    @property
    def row_chunk(self) -> int | None:
        if self._spec is None and not self._open_spec():
            return None
        assert self._spec is not None
        return self._spec.row_chunk

    def row_spec(self) -> tuple[tuple[int, ...], np.dtype] | None:
        if self._spec is None and not self._open_spec():
            return None
        assert self._spec is not None
        return self._spec.row_shape, self._spec.dtype

    # --- staging ---------------------------------------------------------------

    def _stage(self, data: npt.ArrayLike, indices: Any) -> None:
        arr = as_array(data, self.name, lone_row=self.approach == "update" and is_single_index(indices))
        if self.approach == "update":
            positions, rows = self._prepare_update(arr, indices)
            self._updates.add(positions, rows)
            if self._updates.nbytes >= UPDATE_STAGE_BYTES:
                self._write_updates()
                self._updates.clear()
            return
        if indices is not None:
            raise InvalidIndexError(
                f"dataset {self.name!r}: the {self.approach} approach takes no indices; "
                f"got {indices!r} (use approach='update' to write at indices)"
            )
        rows = self._prepare_rows(arr)
        if rows.shape[0] == 0:
            return
        if self._rows is None:
            assert self._spec is not None
            self._stage_limit = self._batch_rows  # computed once per session: save() is hot
            capacity = self._stage_limit + self._spec.row_chunk
            self._rows = RowStager(self._spec.row_shape, self._spec.dtype, capacity)
        self._rows.add(rows)
        if len(self._rows) >= self._stage_limit:
            self._write_rows(final=False)

    def _validated_rows(self, arr: np.ndarray, spec: DatasetSpec) -> np.ndarray:
        check_row_shape(arr, spec.row_shape, self.name)
        return cast_rows(arr, spec.dtype, f"dataset {self.name!r}")

    def _prepare_rows(self, arr: np.ndarray) -> np.ndarray:
        if self._replace_pending or (self._spec is None and not self._open_spec()):
            planned = self._plan_spec((0, *arr.shape[1:]), arr.dtype)
            self._validated_rows(arr, planned)
            self._create((0, *arr.shape[1:]), arr.dtype, replace=self._replace_pending)
            self._replace_pending = False
        assert self._spec is not None
        return self._validated_rows(arr, self._spec)

    def _logical_length(self) -> int:
        return max(self._length, self._updates.max_position + 1)

    def _positions(self, indices: Any, length: int) -> np.ndarray:
        return normalize_indices(indices, length, allow_resize=self.allow_resize, dataset=self.name)

    def _prepare_update(self, arr: np.ndarray, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        single = is_single_index(indices)
        looked = self._spec is None  # the length is read afresh below
        if self._spec is None and not self._open_spec():
            if self._create_shape is None:
                raise DatasetNotFoundError(
                    f"dataset {self.name!r} does not exist; the update approach needs an "
                    "existing dataset or a shape=(rows, ...) option to create it"
                )
            shape = self._create_shape
            planned = self._plan_spec(shape, arr.dtype)
            positions = self._positions(indices, shape[0])
            self._validated_rows(
                rows_for_indices(arr, positions, single, shape[1:], self.name), planned
            )
            self._create(shape, arr.dtype, replace=False)
        assert self._spec is not None
        if not looked and needs_current_length(indices, self._logical_length()):
            # The indices reach past the rows we know: another writer may have
            # appended since we looked.
            self._look_again()
        try:
            positions = self._positions(indices, self._logical_length())
        except RowIndexError:
            # Another process may have appended since we looked: look once more.
            if not self._look_again():
                raise
            positions = self._positions(indices, self._logical_length())
        rows = rows_for_indices(arr, positions, single, self._spec.row_shape, self.name)
        return positions, self._validated_rows(rows, self._spec)

    def _look_again(self) -> bool:
        """Take in rows other writers appended since we looked; whether there were any."""
        fresh = self._disk_length() or 0
        if fresh <= self._length:
            return False
        self._length = fresh
        return True

    # --- runner support ----------------------------------------------------------

    def reserve(self, n_rows: int, row_shape: tuple[int, ...], dtype: npt.DTypeLike) -> None:
        """Create the dataset with ``n_rows`` rows of fill value, or grow it to that."""
        self._check_open()
        row_shape = tuple(int(x) for x in row_shape)
        want = np.dtype(dtype)
        if self._rows is not None and len(self._rows):
            self._write_rows(final=True)
        if self._replace_pending or (self._spec is None and not self._open_spec()):
            self._plan_spec((n_rows, *row_shape), want)
            self._create((n_rows, *row_shape), want, replace=self._replace_pending)
            self._replace_pending = False
        assert self._spec is not None
        if self._spec.row_shape != row_shape:
            raise ShapeMismatchError(
                f"dataset {self.name!r} has rows of shape {self._spec.row_shape}; "
                f"reserve() asked for rows of shape {row_shape}"
            )
        if not can_store(want, self._spec.dtype):
            raise DTypeMismatchError(
                f"dataset {self.name!r} has dtype {self._spec.dtype}; reserve() asked for "
                f"dtype {want}, which cannot be stored in it"
            )
        self._grow_to(int(n_rows))


def _as_shape(shape: Any, saver: str) -> tuple[int, ...]:
    """``shape`` as a tuple of ints; sizes that are no ints (3.5, True) are refused, not truncated."""
    sizes = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        items = tuple(sizes)
        what = f"sizes of type {', '.join(sorted({type(x).__name__ for x in items}))}"
    except TypeError:  # not a sequence
        items, what = (shape,), type(shape).__name__
    if not all(is_int(x) for x in items):
        raise SaverOptionError(
            f"{saver}: shape= expects a tuple of ints (rows, ...); got {shape!r} ({what})"
        )
    out = tuple(int(x) for x in items)
    if not out or any(x < 0 for x in out):
        raise ShapeMismatchError(f"shape= must be a non-empty tuple of sizes >= 0; got {shape!r}")
    return out


__all__ = ["UPDATE_STAGE_BYTES", "DatasetSpec", "StagedSaver"]
