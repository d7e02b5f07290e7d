"""Worker side of a run: process one batch of items, capture failures, stack the rows.

A batch travels to a worker as ``(job, start, items)``; only a
:class:`BatchOutcome` (stacked result rows, or nothing when the worker wrote
them itself) travels back. Everything here must be importable and picklable in
a worker process.
"""

from __future__ import annotations

import multiprocessing.util
import operator
import os
import pickle
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from zsaver._casting import cast_rows, fill_value_problem
from zsaver.errors import DTypeMismatchError, ShapeMismatchError
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
    dtype: np.dtype
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
    dtype: np.dtype | None = None
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
        chosen = [results[p] for p in positions] if len(positions) != len(results) else results
        if not _one_dtype(chosen):
            # numpy would promote [1, 2.5] to floats, [1.0, "n/a"] to text and [1.0, None]
            # to objects: results of several dtypes go one by one, for settle_shapes to
            # judge each against the rows before it, whatever the batch boundaries.
            raise ValueError("several dtypes")
        arr = np.asarray(chosen)
        if arr.dtype.kind not in _NUMBER_KINDS:
            raise ValueError("not numbers")  # text, objects: one by one as well
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
_PYTHON_NUMBERS = (bool, int, float, complex)
_dtype_of = operator.attrgetter("dtype")


def _one_dtype(results: Sequence[Any]) -> bool:
    """Whether numpy gives every result the same dtype (arrays, numpy or Python scalars).

    Example:
        >>> _one_dtype([np.zeros(2), np.ones(2)]), _one_dtype([np.zeros(2), np.arange(2)])
        (True, False)
    """
    try:
        return len(set(map(_dtype_of, results))) <= 1
    except AttributeError:  # Python values: one type of number, or numpy decides per item
        kinds = set(map(type, results))
        return len(kinds) == 1 and kinds.pop() in _PYTHON_NUMBERS


def settle_shapes(
    out: BatchOutcome, row_shape: tuple[int, ...] | None, k: int | None, dtype: np.dtype | None = None
) -> BatchOutcome:
    """``out`` with the rows of every successful item in ``row_shape`` and ``dtype``; others fail.

    ``row_shape`` and ``dtype`` are those of the rows saved so far; None
    (nothing saved yet) takes them from the batch's first successful item.
    Called on batches in item order, so the first result of the run sets them,
    whatever the batch boundaries and the order in which batches finish. Each
    later result is cast to ``dtype`` under the savers' rule
    (:func:`zsaver._casting.cast_rows`); a result of another shape, or one
    that cannot be stored in ``dtype`` without changing its values or their
    kind (text among numbers, a float among ints, a longer string, ``None``),
    fails alone.

    Example:
        >>> out = BatchOutcome(0, 3, [np.zeros(2), np.zeros(3), np.zeros(2)], ragged=True)
        >>> settled = settle_shapes(out, None, None)
        >>> settled.data.shape, [f.index for f in settled.failures]
        ((2, 2), [1])
    """
    if out.data is None:
        return out
    if not out.ragged and (row_shape is None or out.row_shape == row_shape):
        if dtype is None or out.data.dtype == dtype:
            return out
        try:
            data = cast_rows(out.data, dtype, _HOLDER)
        except DTypeMismatchError:
            pass  # some items may fit: judge them one by one
        else:
            return replace(out, data=data, dtype=data.dtype)
    ok = np.ones(out.count, dtype=bool) if out.ok is None else out.ok.copy()
    positions = np.flatnonzero(ok).tolist()
    arrays = out.data if out.ragged else _items_of(out.data, len(positions), k)
    failures = list(out.failures)
    kept = []
    for pos, arr in zip(positions, arrays, strict=True):
        exc_type, message = "ShapeMismatchError", None
        shape = None if k is not None and (arr.ndim == 0 or arr.shape[0] != k) else (
            arr.shape if k is None else arr.shape[1:])
        if shape is None:
            message = f"rows_per_item={k} but the result has shape {arr.shape}"
        elif arr.dtype == object:  # numpy holds None, dicts, mixed lists only as Python objects
            exc_type, message = "DTypeMismatchError", (
                "the result holds objects (dtype object); expected numbers, text or times")
        elif row_shape is not None and shape != row_shape:
            message = f"result rows of shape {shape}, expected {row_shape} like the rows before"
        elif dtype is not None:
            try:
                arr = cast_rows(arr, dtype, _HOLDER)
            except DTypeMismatchError as exc:
                exc_type, message = "DTypeMismatchError", f"{exc}; set the saver's dtype to store both"
        if message is not None:
            ok[pos] = False
            failures.append(ItemFailure(out.start + pos, exc_type, message))
            continue
        row_shape = shape if row_shape is None else row_shape
        dtype = arr.dtype if dtype is None else dtype
        kept.append(arr)
    failures.sort(key=lambda f: f.index)
    if not kept:
        return BatchOutcome(out.start, out.count, None, ok, failures)
    data = np.stack(kept)
    if k is not None:
        data = data.reshape((data.shape[0] * k, *data.shape[2:]))
    return BatchOutcome(out.start, out.count, data, None if ok.all() else ok, failures,
                        tuple(data.shape[1:]), data.dtype)


#: Who has the dtype a result is cast to, in messages.
_HOLDER = "the run's rows (the dataset, or else the first result)"


def _items_of(data: np.ndarray, n_items: int, k: int | None) -> list[np.ndarray]:
    """The rows of each item in stacked ``data``: one row each, or ``k``."""
    if k is None:
        return list(data)
    return [data[i * k : (i + 1) * k] for i in range(n_items)]


def default_fill(dtype: np.dtype) -> Any:
    """The value of the rows of a skipped item: NaN for floats, 0 / False / "" otherwise."""
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind in "UST":
        return ""
    if dtype.kind == "M":
        return np.datetime64("NaT")
    if dtype.kind == "m":
        return np.timedelta64("NaT")
    return 0


def check_fill_value(fill_value: Any, dtype: np.dtype) -> None:
    """Raise ValueError unless ``fill_value`` fills ``dtype`` unchanged (None: the default).

    The savers' rule for their own ``fill_value=`` (:func:`zsaver._casting.fill_value_problem`).
    """
    if fill_value is None:
        return
    why = fill_value_problem(fill_value, dtype)
    if why is not None:
        raise ValueError(f"fill_value={fill_value!r} cannot be stored in the results' dtype {dtype} unchanged: {why}")


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
            out.row_shape, out.dtype = tuple(data.shape[1:]), data.dtype
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
    dtype = write.dtype
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
    "release_task", "run_batch", "settle_shapes",
]
