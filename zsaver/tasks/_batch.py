"""Worker side of a run: process one batch of items, capture failures, stack the rows.

A batch travels to a worker as ``(job, start, items)``; only a
:class:`BatchOutcome` (stacked result rows, or nothing when the worker wrote
them itself) travels back. Everything here must be importable and picklable in
a worker process.
"""

from __future__ import annotations

import multiprocessing.util
import os
import pickle
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zsaver.errors import ShapeMismatchError
from zsaver.tasks._report import ItemFailure
from zsaver.tasks._task import FunctionTask, Task


@dataclass
class BatchJob:
    """What every batch of one run shares (sent along with each batch)."""

    task: Task
    #: Unique per run: workers set a task up once per token.
    token: str
    task_kwargs: dict[str, Any]
    retries: int
    vectorised: bool
    #: None: each result is one row; k: each result holds k rows.
    rows_per_item: int | None
    #: False when there is no saver: results come back as they are, unstacked.
    stack: bool
    driver_pid: int


@dataclass
class WorkerWrite:
    """Where a worker writes its rows itself (``write="workers"``)."""

    saver_bytes: bytes  # a pickled ``saver.clone(approach="update")``
    row_base: int
    row_shape: tuple[int, ...]
    dtype: str
    fill_value: Any
    row_chunk: int


@dataclass
class BatchOutcome:
    start: int
    count: int
    #: Stacked rows of the items that succeeded (``stack``), a list of results
    #: with None for failures (no ``stack``), or None if all failed or the worker wrote them.
    data: Any = None
    #: None when every item succeeded, else a bool per item.
    ok: np.ndarray | None = None
    failures: list[ItemFailure] = field(default_factory=list)
    row_shape: tuple[int, ...] | None = None
    dtype: str | None = None
    rows_written: int = 0
    #: True when the results had several shapes: ``data`` is then a list of the
    #: successful results as arrays, for :func:`settle_shapes` to sort out.
    ragged: bool = False


# Tasks already set up in this process, by run token.
_ready_tasks: dict[str, Task] = {}
_ready_guard = threading.Lock()


def _ready_task(job: BatchJob) -> Task:
    task = _ready_tasks.get(job.token)
    if task is not None:
        return task
    with _ready_guard:
        task = _ready_tasks.get(job.token)
        if task is None:
            task = job.task
            task.setup()
            _ready_tasks[job.token] = task
            if os.getpid() != job.driver_pid:
                # Worker processes end through multiprocessing's exit path, which
                # runs Finalize callbacks but not necessarily atexit handlers.
                multiprocessing.util.Finalize(None, task.teardown, exitpriority=10)
    return task


def release_task(token: str) -> None:
    """Tear down the task of run ``token`` if it was set up in this process."""
    with _ready_guard:
        task = _ready_tasks.pop(token, None)
    if task is not None:
        task.teardown()


def _failure(index: int, exc: BaseException) -> ItemFailure:
    text = "".join(traceback.format_exception(exc))
    return ItemFailure(index, type(exc).__name__, str(exc), text)


def _call_items(task: Task, job: BatchJob, start: int, items: Sequence[Any]) -> tuple[list[Any], dict[int, ItemFailure]]:
    """Results per item (None where failed) and failures by position in the batch."""
    kwargs = job.task_kwargs
    if job.vectorised:
        try:
            batch_results = list(task.process_items(items, **kwargs))
        except Exception:
            pass  # find the failing items one by one below
        else:
            if len(batch_results) == len(items):
                return batch_results, {}
            # Not one item's fault, and item by item would hide it: every item fails with it.
            wrong = ShapeMismatchError(f"process_items returned {len(batch_results)} results for {len(items)} items")
            return [None] * len(items), {pos: _failure(start + pos, wrong) for pos in range(len(items))}
    fn = task.fn if isinstance(task, FunctionTask) else task.process_item
    results: list[Any] = []
    failed: dict[int, ItemFailure] = {}
    append = results.append
    for pos, item in enumerate(items):
        try:
            append(fn(item, **kwargs) if kwargs else fn(item))
        except Exception as first:
            value, exc = _retry(fn, item, kwargs, job.retries, first)
            append(value)
            if exc is not None:
                failed[pos] = _failure(start + pos, exc)
    return results, failed


def _retry(fn: Any, item: Any, kwargs: dict[str, Any], retries: int, exc: Exception) -> tuple[Any, Exception | None]:
    for _ in range(retries):
        try:
            return fn(item, **kwargs), None
        except Exception as again:
            exc = again
    return None, exc


def _stack(results: list[Any], positions: list[int], k: int | None,
           failed: dict[int, ItemFailure], start: int) -> np.ndarray | list[np.ndarray] | None:
    """Rows of the successful results as one array, or a list of arrays when their shapes differ.

    Which shape is right is not decided here: the rows saved before the batch
    decide it (see :func:`settle_shapes`), whatever the batch boundaries.
    """
    if not positions:
        return None
    try:
        arr = np.asarray([results[p] for p in positions] if len(positions) != len(results) else results)
        if arr.dtype.kind not in _NUMBER_KINDS:
            # numpy turns [1.0, "n/a"] into text and [1.0, None] into objects: results
            # that are not all numbers go one by one, for settle_shapes to judge.
            raise ValueError("not numbers")
    except ValueError:
        arrays = []
        for p in list(positions):
            try:
                arrays.append(np.asarray(results[p]))
            except (ValueError, TypeError) as exc:  # e.g. a list of arrays of two shapes
                failed[p] = ItemFailure(start + p, "ShapeMismatchError",
                                        f"the result is no array of one shape: {exc}")
                positions.remove(p)
        return arrays or None
    if k is not None:
        if arr.ndim < 2 or arr.shape[1] != k:
            for p in positions:
                failed[p] = ItemFailure(start + p, "ShapeMismatchError",
                                        f"rows_per_item={k} but a result has shape {arr.shape[1:]}")
            positions.clear()
            return None
        arr = arr.reshape((arr.shape[0] * k, *arr.shape[2:]))
    return arr


_NUMBER_KINDS = "biufc"


def value_class(dtype: np.dtype) -> str:
    """What a dtype holds, as far as one run's rows must agree: numbers, text, times, ...

    Example:
        >>> value_class(np.dtype("i8")) == value_class(np.dtype("f4")), value_class(np.dtype("U3"))
        (True, 'text')
    """
    if dtype.kind in _NUMBER_KINDS:
        return "numbers"
    return {"U": "text", "S": "text", "T": "text", "M": "datetimes", "m": "timedeltas", "V": "records"}.get(
        dtype.kind, "objects"
    )


def settle_shapes(
    out: BatchOutcome, row_shape: tuple[int, ...] | None, k: int | None, dtype: np.dtype | None = None
) -> BatchOutcome:
    """``out`` with the rows of every successful item in ``row_shape``; items of another shape fail.

    ``row_shape`` is the shape of the rows saved so far; None (nothing saved
    yet) takes the shape of the batch's first successful item. Called on
    batches in item order, so the first result of the run sets the shape,
    whatever the batch boundaries and the order in which batches finish.
    Values are judged the same way: a result holding other values than the
    rows before it (text among numbers, ``None``) fails, as does any result
    numpy can only hold as Python objects. ``dtype``: that of the rows saved so far.

    Example:
        >>> out = BatchOutcome(0, 3, [np.zeros(2), np.zeros(3), np.zeros(2)], ragged=True)
        >>> settled = settle_shapes(out, None, None)
        >>> settled.data.shape, [f.index for f in settled.failures]
        ((2, 2), [1])
    """
    values = None if dtype is None else value_class(dtype)
    if not out.ragged and (
        out.data is None
        or row_shape is None
        or (out.row_shape == row_shape and values in (None, value_class(out.data.dtype)))
    ):
        return out
    ok = np.ones(out.count, dtype=bool) if out.ok is None else out.ok.copy()
    positions = np.flatnonzero(ok).tolist()
    arrays = out.data if out.ragged else [None] * len(positions)
    failures = list(out.failures)
    kept = []
    for pos, arr in zip(positions, arrays, strict=True):
        exc_type = "ShapeMismatchError"
        if arr is None:  # a stacked batch that does not fit: all of it fails alike
            shape, message = None, (
                f"result rows of shape {out.row_shape} holding {value_class(out.data.dtype)}; "
                f"the dataset's rows have shape {row_shape} and hold {values}"
            )
            if out.row_shape == row_shape:
                exc_type = "DTypeMismatchError"
        elif k is not None and (arr.ndim == 0 or arr.shape[0] != k):
            shape, message = None, f"rows_per_item={k} but the result has shape {arr.shape}"
        elif (held := value_class(arr.dtype)) == "objects" or (values is not None and held != values):
            # ``values`` is never "objects": such a result never sets it.
            shape, exc_type = None, "DTypeMismatchError"
            message = (
                f"the result holds {held} (dtype {arr.dtype})"
                + (f", the rows before it hold {values}" if values else "")
                + ("; expected numbers, text or times" if held == "objects" else "")
            )
        else:
            shape = arr.shape if k is None else arr.shape[1:]
            if row_shape is None:
                row_shape = shape
            if values is None:
                values = held
            message = f"result rows of shape {shape}, expected {row_shape} like the rows before"
        if arr is not None and shape is not None and shape == row_shape:
            kept.append(arr)
        else:
            ok[pos] = False
            failures.append(ItemFailure(out.start + pos, exc_type, message))
    failures.sort(key=lambda f: f.index)
    if not kept:
        return BatchOutcome(out.start, out.count, None, ok, failures)
    data = np.stack(kept)
    if k is not None:
        data = data.reshape((data.shape[0] * k, *data.shape[2:]))
    return BatchOutcome(out.start, out.count, data, None if ok.all() else ok, failures,
                        tuple(data.shape[1:]), data.dtype.str)


def default_fill(dtype: np.dtype) -> Any:
    """The value of the rows of a skipped item: NaN for floats, 0 / False / "" otherwise."""
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind in "US":
        return ""
    if dtype.kind == "M":
        return np.datetime64("NaT")
    if dtype.kind == "m":
        return np.timedelta64("NaT")
    return 0


def check_fill_value(fill_value: Any, dtype: np.dtype) -> None:
    """Raise ValueError unless ``fill_value`` is stored exactly in ``dtype`` (None: the default)."""
    if fill_value is None:
        return
    value = np.asarray(fill_value)
    try:
        stored = value.astype(dtype)
        try:
            exact = np.array_equal(stored, value, equal_nan=True)
        except TypeError:  # strings and other types without NaN
            exact = np.array_equal(stored, value)
    except (ValueError, TypeError, OverflowError):
        exact = False
    if not exact:
        raise ValueError(f"fill_value={fill_value!r} cannot be stored exactly in the results' dtype {dtype}")


def expand_rows(outcome: BatchOutcome, k: int, row_shape: tuple[int, ...], dtype: np.dtype,
                fill_value: Any) -> np.ndarray:
    """All ``count * k`` rows of a batch, fill rows standing in for failed items.

    The rows keep the dtype of the batch's results (widened to hold the fill), so
    the saver checks the cast of those results as it would without a failure.
    """
    if outcome.ok is None and outcome.data is not None:
        return outcome.data
    if outcome.data is not None:
        dtype = np.result_type(dtype, outcome.data.dtype)
    fill = default_fill(dtype) if fill_value is None else fill_value
    rows = np.full((outcome.count * k, *row_shape), fill, dtype=dtype)
    if outcome.data is not None and outcome.ok is not None:
        rows[np.repeat(outcome.ok, k)] = outcome.data
    return rows


def run_batch(job: BatchJob, start: int, items: Sequence[Any], write: WorkerWrite | None = None) -> BatchOutcome:
    """Process items ``start .. start+len(items)`` and return (or write) their rows."""
    task = _ready_task(job)
    results, failed = _call_items(task, job, start, items)
    out = BatchOutcome(start, len(items))
    if not job.stack:
        out.data = results
    else:
        positions = [p for p in range(len(items)) if p not in failed] if failed else list(range(len(items)))
        data = _stack(results, positions, job.rows_per_item, failed, start)
        out.data = data
        if isinstance(data, list):
            out.ragged = True
        elif data is not None:
            out.row_shape, out.dtype = tuple(data.shape[1:]), data.dtype.str
    if failed:
        ok = np.ones(len(items), dtype=bool)
        ok[list(failed)] = False
        out.ok = ok
        out.failures = [failed[p] for p in sorted(failed)]
    if write is not None:
        _write_rows(out, job, write)
    return out


def _write_rows(out: BatchOutcome, job: BatchJob, write: WorkerWrite) -> None:
    k = job.rows_per_item or 1
    dtype = np.dtype(write.dtype)
    settled = settle_shapes(out, write.row_shape, job.rows_per_item, dtype)
    out.data, out.ok, out.failures = settled.data, settled.ok, settled.failures
    out.row_shape, out.dtype, out.ragged = settled.row_shape, settled.dtype, False
    rows = expand_rows(out, k, write.row_shape, dtype, write.fill_value)
    first = write.row_base + out.start * k
    saver = pickle.loads(write.saver_bytes)
    try:
        saver.save(rows, indices=slice(first, first + len(rows)))
        saver.flush()  # durable before the driver may record it as done
    finally:
        saver.close()
    out.rows_written = len(rows)
    out.data = None


__all__ = [
    "BatchJob", "BatchOutcome", "WorkerWrite", "check_fill_value", "default_fill", "expand_rows",
    "release_task", "run_batch", "settle_shapes", "value_class",
]
