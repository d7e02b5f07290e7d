"""Checks shared by every saver: data to rows, row indices (the casting rule: ``zsaver._casting``).

Everything here is pure (no I/O), so a saver can run all checks before it
writes its first byte.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
import numpy.typing as npt

from zsaver._casting import fill_value_problem
from zsaver.errors import (
    DatasetSpecError,
    DTypeMismatchError,
    DuplicateIndexError,
    InvalidIndexError,
    RowIndexError,
    SaverOptionError,
    ShapeMismatchError,
)

#: Target size of a default chunk along axis 0 (trailing axes are never split).
DEFAULT_CHUNK_BYTES = 1 << 20


def as_array(data: npt.ArrayLike, dataset: str, *, lone_row: bool = False) -> np.ndarray:
    """``data`` as an ndarray with at least one axis; ragged, object and 0-d data are refused.

    ``lone_row`` (an update at one int index) accepts 0-d data: the row of a 1-D dataset.

    Example:
        >>> as_array([[1, 2], [3, 4]], "d").shape
        (2, 2)
    """
    if isinstance(data, np.ndarray):
        arr = data
    else:
        try:
            arr = np.asarray(data)
        except ValueError as exc:  # numpy >= 1.24 refuses ragged nested sequences
            raise ShapeMismatchError(
                f"dataset {dataset!r}: expected rectangular data (all rows of one shape); "
                f"got ragged data ({exc})"
            ) from None
    if arr.dtype == object:
        raise DTypeMismatchError(
            f"dataset {dataset!r}: expected numeric, bool or fixed-width string data; "
            "got dtype object (ragged rows or Python objects)"
        )
    if arr.ndim == 0 and not lone_row:
        raise ShapeMismatchError(
            f"dataset {dataset!r}: expected data with a row axis (ndim >= 1); got a "
            f"zero-dimensional value {arr!r}; wrap it, e.g. np.atleast_1d(value)"
        )
    if arr.dtype.kind == "V" and arr.dtype.fields is None:
        raise DTypeMismatchError(f"dataset {dataset!r}: raw void dtype {arr.dtype} is not storable")
    return arr


def check_row_shape(arr: np.ndarray, row_shape: tuple[int, ...], dataset: str) -> None:
    """Raise unless ``arr`` is a stack of rows of ``row_shape``."""
    if arr.shape[1:] != row_shape:
        raise ShapeMismatchError(
            f"dataset {dataset!r} has rows of shape {row_shape}; got data of shape "
            f"{arr.shape} (rows of shape {arr.shape[1:]})"
        )


def default_row_chunk(row_shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Rows per chunk so that a chunk holds about 1 MiB (at least one row)."""
    row_bytes = max(1, math.prod(row_shape) * dtype.itemsize)
    return max(1, DEFAULT_CHUNK_BYTES // row_bytes)


def check_chunks(chunks: Any, dataset: str, *, auto: bool) -> int | tuple[int, ...] | str | None:
    """``chunks`` if it is rows per chunk or a chunk shape of ints >= 1 (or None; "auto" if ``auto``).

    Anything else (True, 2.5, a shape holding a float) raises DatasetSpecError
    instead of being coerced by zarr or h5py.

    Example:
        >>> check_chunks([4, 3], "d", auto=False)
        (4, 3)
    """
    if chunks is None or (auto and isinstance(chunks, str) and chunks == "auto"):
        return chunks
    if is_int(chunks) and chunks >= 1:
        return int(chunks)
    shape = list(chunks) if isinstance(chunks, np.ndarray) and chunks.ndim == 1 else chunks
    if isinstance(shape, (tuple, list)) and shape and all(is_int(x) and x >= 1 for x in shape):
        return tuple(int(x) for x in shape)
    also = ', or "auto"' if auto else ""
    raise DatasetSpecError(
        f"dataset {dataset!r}: chunks= expects rows per chunk (an int >= 1) or a chunk shape "
        f"(a tuple of ints >= 1){also}; got {chunks!r} ({type(chunks).__name__})"
    )


def check_fill_value(fill_value: Any, dtype: np.dtype, dataset: str) -> None:
    """Raise DatasetSpecError unless ``fill_value`` is stored in ``dtype`` unchanged.

    A fill value is a value, not typed data: 0 fills a bool or uint8 dataset, the
    text "NaT" a datetime one; 1.5 does not fit an integer dtype, nor 300 a uint8,
    "abc" an S2 or 1e300 a float32. Floats may round, as data does. A tuple fills
    a structured dtype field by field.

    Example:
        >>> check_fill_value(np.nan, np.dtype("f4"), "d")
        >>> check_fill_value(300, np.dtype("u1"), "d")
        Traceback (most recent call last):
        ...
        zsaver.errors.DatasetSpecError: dataset 'd': fill_value=300 cannot be stored in dtype uint8 unchanged: it would be stored as np.uint8(44) (overflow, wrap-around or truncation)
    """
    if fill_value is None:  # the backend's default fill value
        return
    why = fill_value_problem(fill_value, dtype)
    if why is not None:
        raise DatasetSpecError(
            f"dataset {dataset!r}: fill_value={fill_value!r} cannot be stored in dtype "
            f"{dtype} unchanged: {why}"
        )


def check_options(options: dict[str, Any], allowed: frozenset[str], saver: str) -> None:
    """Refuse unknown keyword options instead of silently ignoring them."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise SaverOptionError(
            f"{saver} got unknown option(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(allowed))}"
        )


def is_int(value: Any) -> bool:
    """True for a Python or numpy int (not a bool): a size, a bound or a single row index."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_single_index(indices: Any) -> bool:
    """True for an int-like scalar index (not a bool)."""
    return is_int(indices)


_INT64_MAX = int(np.iinfo(np.int64).max)


def _in_int64(index: int, length: int, dataset: str) -> int:
    """``index`` if it fits a row position at all, else RowIndexError naming it."""
    if not -_INT64_MAX <= index <= _INT64_MAX:
        raise RowIndexError(f"dataset {dataset!r}: index {index} is out of bounds for length {length}")
    return index


def _slice_positions(indices: slice, length: int, allow_resize: bool) -> np.ndarray:
    """The rows a slice addresses; with ``allow_resize`` a stop past the end grows the dataset.

    Negative starts and stops count from the current end, as numpy's do.
    """
    step = 1 if indices.step is None else operator.index(indices.step)
    stop = indices.stop if indices.stop is None else operator.index(indices.stop)
    if step == 0:
        raise ValueError("slice step cannot be zero")
    if not allow_resize or step <= 0 or stop is None or stop <= length:
        return np.arange(*indices.indices(length), dtype=np.int64)
    start = 0 if indices.start is None else operator.index(indices.start)
    if start < 0:
        start = max(0, start + length)
    return np.arange(start, stop, step, dtype=np.int64)


def normalize_indices(indices: Any, length: int, *, allow_resize: bool, dataset: str) -> np.ndarray:
    """Row positions (int64, 1-D, non-negative, unique) addressed by ``indices``.

    ``length`` is the dataset's current number of rows. Without ``allow_resize``
    every position must be below it; with it, positions past the end are kept
    (the dataset grows). Negative positions count from the end as in numpy.

    Example:
        >>> normalize_indices([3, -1], 5, allow_resize=False, dataset="d").tolist()
        [3, 4]
    """
    if indices is None:
        raise InvalidIndexError(
            f"dataset {dataset!r}: the update approach needs indices (int, slice, list or "
            "array of ints, or boolean mask); got None"
        )
    if is_single_index(indices):
        positions = np.array([_in_int64(operator.index(indices), length, dataset)], dtype=np.int64)
    elif isinstance(indices, slice):
        try:
            return _slice_positions(indices, length, allow_resize)  # in range, no duplicates
        except (TypeError, ValueError) as exc:  # float bounds, a zero step
            raise InvalidIndexError(
                f"dataset {dataset!r}: expected a slice of ints with a non-zero step; "
                f"got {indices!r} ({exc})"
            ) from None
    else:
        try:
            raw = np.asarray(indices)
        except ValueError:
            raw = np.asarray(indices, dtype=object)
        if raw.dtype == bool:
            if raw.ndim != 1 or raw.shape[0] != length:
                raise ShapeMismatchError(
                    f"dataset {dataset!r}: a boolean mask must have one entry per row "
                    f"({length}); got a mask of shape {raw.shape}"
                )
            return np.flatnonzero(raw).astype(np.int64)
        if raw.size == 0 and raw.ndim == 1:
            raw = raw.astype(np.int64)
        if raw.dtype.kind not in "iu" or raw.ndim != 1:
            raise InvalidIndexError(
                f"dataset {dataset!r}: expected indices as an int, a slice, a 1-D list or "
                f"array of ints, or a boolean mask; got {type(indices).__name__} with "
                f"dtype {raw.dtype} and shape {raw.shape}"
            )
        if raw.dtype.kind == "u" and raw.size and raw.max() > _INT64_MAX:
            _in_int64(int(raw.max()), length, dataset)  # raises, naming the index
        positions = raw.astype(np.int64, copy=True)
    too_low = positions < -length
    if too_low.any():
        bad = int(positions[too_low][0])
        raise RowIndexError(
            f"dataset {dataset!r}: index {bad} is out of bounds for length {length}"
        )
    positions[positions < 0] += length
    too_high = positions >= length
    if not allow_resize and too_high.any():
        bad = int(positions[too_high][0])
        raise RowIndexError(
            f"dataset {dataset!r}: index {bad} is out of bounds for length {length} "
            "(make the saver with allow_resize=True to grow the dataset)"
        )
    if positions.size > 1:
        ordered = np.sort(positions)
        dup = ordered[1:][ordered[1:] == ordered[:-1]]
        if dup.size:
            raise DuplicateIndexError(
                f"dataset {dataset!r}: index {int(dup[0])} appears more than once in one "
                "update; expected each row at most once"
            )
    return positions


def needs_current_length(indices: Any, length: int) -> bool:
    """Whether ``indices`` reach past the ``length`` rows known, so the dataset may have grown.

    True for a slice with a bound past ``length`` and a boolean mask of another
    length; int lists past ``length`` raise RowIndexError, which says as much.
    Negative ints, masks of ``length`` entries and open slices count from the
    known end: looking again on every such save would cost a read each.

    Example:
        >>> needs_current_length(-1, 5), needs_current_length(slice(2, None), 5)
        (False, False)
        >>> needs_current_length(slice(2, 7), 5), needs_current_length([True] * 7, 5)
        (True, True)
    """
    if isinstance(indices, slice):
        bounds = (indices.start, indices.stop)
        return all(b is None or is_int(b) for b in bounds) and any(
            b is not None and b > length for b in bounds
        )
    if indices is None or is_single_index(indices) or isinstance(indices, (str, bytes)):
        return False
    try:
        raw = np.asarray(indices)
    except ValueError:
        return False
    return raw.dtype == bool and raw.ndim == 1 and raw.shape[0] != length


def rows_for_indices(
    arr: np.ndarray, positions: np.ndarray, single: bool, row_shape: tuple[int, ...], dataset: str
) -> np.ndarray:
    """``arr`` as one row per position (a lone row is accepted for an int index)."""
    if single and arr.shape == row_shape:
        arr = arr.reshape((1, *row_shape))
    check_row_shape(arr, row_shape, dataset)
    if arr.shape[0] != positions.shape[0]:
        raise ShapeMismatchError(
            f"dataset {dataset!r}: {positions.shape[0]} indices but {arr.shape[0]} rows of data"
        )
    return arr


__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "as_array",
    "check_chunks",
    "check_fill_value",
    "check_options",
    "check_row_shape",
    "default_row_chunk",
    "is_int",
    "is_single_index",
    "needs_current_length",
    "normalize_indices",
    "rows_for_indices",
]
