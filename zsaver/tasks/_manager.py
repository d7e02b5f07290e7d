"""TaskManager: run a Task over items in batches and checkpoint the results, in item order, through a Saver."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import math
import os
import pickle
import sys
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from zsaver.errors import DTypeMismatchError, ResumeMismatchError, TaskError, WorkerDiedError
from zsaver.savers.base import Saver, normalize_approach
from zsaver.tasks._batch import (
    BatchJob,
    BatchOutcome,
    WorkerWrite,
    check_fill_value,
    expand_rows,
    release_task,
    run_batch,
    settle_shapes,
)
from zsaver.tasks._executors import ExecutorHandle, validate_executor
from zsaver.tasks._ordering import ReorderBuffer
from zsaver.tasks._progress import (
    CompletionRecord,
    ItemFingerprint,
    dtype_from_json,
    dtype_to_json,
    failures_doc_name,
)
from zsaver.tasks._report import ItemFailure, TaskReport
from zsaver.tasks._task import Task, as_task, is_vectorised
from zsaver.tasks._writer import RowWriter, concat_rows, positions_of, saver_length

ON_ERROR = ("raise", "skip")
WRITE_MODES = ("driver", "workers")


@dataclass
class _Batch:
    start: int
    items: list[Any]
    #: The items' fingerprint encoding, taken when they were read: before the task
    #: runs on them (it may change them in place).
    encoded: Any = None
    #: Runs alone after a worker death, to find the item that kills workers.
    isolated: bool = False
    deaths: int = 0


class TaskManager:
    """Run a :class:`Task` (or a plain function) over many items and save the results.

    Args:
        task: a Task instance or subclass, or a function ``fn(item, **kwargs)``.
        executor: ``"serial"``, ``"threads"``, ``"processes"``, any
            :class:`concurrent.futures.Executor`, or a ``dask.distributed.Client``.
        n_workers: workers for ``"threads"`` / ``"processes"`` (default: the CPU count
            for ``"processes"``, ``min(32, CPU count + 4)`` for ``"threads"``).
        batch_size: items sent to a worker at once (default: chosen from
            ``save_interval``, the item count and the workers).

    Example:
        >>> tm = TaskManager(lambda x: x * x)
        >>> tm.submit_tasks(range(4), progress=False).results
        [0, 1, 4, 9]
    """

    def __init__(
        self,
        task: Task | type[Task] | Callable[..., Any],
        *,
        executor: Any = "serial",
        n_workers: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.task = as_task(task)
        if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None; got {batch_size!r}")
        self.executor = executor
        self.n_workers = n_workers
        self.batch_size = batch_size
        validate_executor(executor, n_workers)  # fail now, not at the first submit_tasks

    def submit_tasks(
        self,
        items: Iterable[Any],
        saver: Saver | None = None,
        save_interval: int = 100,
        resume: bool = True,
        on_error: str = "raise",
        retries: int = 0,
        progress: bool = True,
        consolidate: str | int | None = "end",
        task_kwargs: dict[str, Any] | None = None,
        *,
        rows_per_item: int | None = None,
        fill_value: Any = None,
        write: str = "driver",
        record_name: str = "tasks",
        max_in_flight: int | None = None,
    ) -> TaskReport:
        """Process ``items`` and persist item i's rows at row i (times ``rows_per_item``).

        Returns a :class:`TaskReport`. Raises :class:`~zsaver.errors.TaskError`
        (``on_error="raise"``) after checkpointing every result before the
        failing item, and :class:`~zsaver.errors.ResumeMismatchError` when the
        saver's completion records belong to other items (unless ``resume=False``).

        ``rows_per_item=None`` means each result is one row; an int k means each
        result holds k rows. A skipped item's rows hold ``fill_value`` (default:
        NaN for floats, 0 for ints, "" for strings) and the failure is recorded.
        ``write="workers"`` makes each worker write its rows itself (needs
        ``saver.clone`` and ``saver.row_chunk``). ``max_in_flight`` bounds the
        batches submitted and not yet saved (default: 1 with a single worker, else 2 per
        worker + 1).
        """
        if not _is_int(save_interval) or save_interval < 1:
            raise ValueError(f"save_interval must be a positive int; got {save_interval!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(map(repr, ON_ERROR))}; got {on_error!r}")
        if not _is_int(retries) or retries < 0:
            raise ValueError(f"retries must be an int >= 0; got {retries!r}")
        if not (consolidate is None or consolidate == "end" or (_is_int(consolidate) and int(consolidate) >= 1)):
            raise ValueError(f"consolidate must be 'end', a positive int or None; got {consolidate!r}")
        if rows_per_item is not None and (not _is_int(rows_per_item) or rows_per_item < 1):
            raise ValueError(f"rows_per_item must be a positive int or None; got {rows_per_item!r}")
        if write not in WRITE_MODES:
            raise ValueError(f"write must be one of {', '.join(map(repr, WRITE_MODES))}; got {write!r}")
        if max_in_flight is not None and (not _is_int(max_in_flight) or max_in_flight < 1):
            raise ValueError(f"max_in_flight must be a positive int or None; got {max_in_flight!r}")
        if task_kwargs is not None and not isinstance(task_kwargs, dict):
            raise TypeError(f"task_kwargs must be a dict or None; got {type(task_kwargs).__name__}")
        if saver is not None and not isinstance(saver, Saver):
            raise TypeError(f"saver must be a zsaver.Saver or None; got {type(saver).__name__}")
        if write == "workers" and saver is None:
            raise ValueError("write='workers' needs a saver")
        if write == "workers" and normalize_approach(getattr(saver, "approach", "append")) == "overwrite":
            raise ValueError(
                "write='workers' writes rows at their indices into the existing dataset; "
                "got an 'overwrite' saver (use 'append' or 'update')"
            )
        if write == "workers" and not saver.clones_share_dataset():  # type: ignore[union-attr]
            raise ValueError(
                f"write='workers' needs a dataset that worker processes share; {saver!r} does not "
                "read at once what a pickled copy of its store writes (the copy keeps its own data, "
                "as a MemoryStore's does, or the store caches values, as an LRUStoreCache does), so "
                "rows written by workers would be lost or read stale (use a store on disk without a "
                "cache, or write='driver')"
            )
        run = _Run(self, items, saver, save_interval, resume, on_error, retries, progress, consolidate,
                   dict(task_kwargs or {}), rows_per_item, fill_value, write, record_name, max_in_flight)
        return run.execute()


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


class _Run:
    """The state of one ``submit_tasks`` call."""

    def __init__(self, manager: TaskManager, items: Iterable[Any], saver: Saver | None, save_interval: int,
                 resume: bool, on_error: str, retries: int, progress: bool, consolidate: str | int | None,
                 task_kwargs: dict[str, Any], rows_per_item: int | None, fill_value: Any, write: str,
                 record_name: str, max_in_flight: int | None) -> None:
        self.manager, self.saver = manager, saver
        self.save_interval, self.resume, self.on_error = save_interval, resume, on_error
        self.retries, self.progress, self.consolidate = retries, progress, consolidate
        self.k = rows_per_item or 1
        self.rows_per_item, self.fill_value, self.write_mode = rows_per_item, fill_value, write
        self.record_name, self.max_in_flight = record_name, max_in_flight
        try:
            self.n_items: int | None = len(items)  # type: ignore[arg-type]
        except TypeError:
            self.n_items = None
        self.items: Iterator[Any] = iter(items)
        self.task_kwargs = task_kwargs
        self.report = TaskReport()
        self.approach = normalize_approach(getattr(saver, "approach", "append")) if saver is not None else "append"
        self.records = saver is not None and saver.supports_records
        self.record: CompletionRecord | None = None
        self.fingerprint = ItemFingerprint()
        self.row_shape: tuple[int, ...] | None = None
        self.dtype: np.dtype | None = None
        # Batches released in order and not yet written: (first_row, outcome).
        self.pending: list[tuple[int, Any]] = []
        self.pending_items = 0
        self.pending_failures: list[Any] = []
        self.committed = 0  # items released in order (the next checkpoint covers them)
        self.results: list[Any] | None = [] if saver is None else None
        self.first_failure: ItemFailure | None = None
        self.failures_seen = 0  # for the progress bar
        self.release_stopped = False  # set when releasing a batch failed
        self.checkpoints = 0
        self.consolidated_at = -1  # the checkpoint count at the last consolidation
        self.worker_write: WorkerWrite | None = None
        self.reserved = 0  # rows reserved for workers that write themselves

    # --- set-up -------------------------------------------------------------

    def _open_records(self) -> int:
        """Read (or start) the completion record; skip and verify finished items. Returns the first item to do."""
        saver = self.saver
        if saver is None:
            return 0
        existing = saver.read_record(self.record_name) if self.records and self.resume else None
        record = None if existing is None else CompletionRecord.model_validate(existing)
        if record is not None and self._covers_nothing(saver, record):
            record = None  # this run starts afresh, with its own items and row base
        # An overwrite run that saved nothing yet still replaces the old dataset.
        self._adopt_dataset_rows(saver, resuming=record is not None and record.items_done > 0)
        if record is not None:
            record.check_compatible(self.n_items, self.rows_per_item)
            length = saver_length(saver)
            if record.items_done and length is None and self.approach != "update" and self.write_mode == "driver":
                raise ResumeMismatchError(
                    f"completion records say {record.items_done} items are saved, but "
                    f"{type(saver).__name__} does not report its length, so rows saved after the "
                    "last record cannot be told from missing ones (a rerun would append them "
                    "twice); implement __len__ to resume, or pass resume=False"
                )
            if record.items_done and length is not None and length < record.rows_done:
                raise ResumeMismatchError(
                    f"completion records say {record.items_done} items are saved (rows up to "
                    f"{record.rows_done}), but the dataset has {length} rows: it was deleted, replaced or "
                    "cut; pass resume=False to start over"
                )
            # Verify the already-done prefix before the first byte is written, in the
            # record's encoding; from now on the record uses the current one.
            recorded = self.fingerprint
            if record.fingerprint_version != self.fingerprint.version:
                recorded = ItemFingerprint(record.fingerprint_version)
            todo = record.items_done
            while todo:
                chunk = list(itertools.islice(self.items, min(todo, 65536)))
                if not chunk:
                    break
                self.fingerprint.update(chunk)
                if recorded is not self.fingerprint:
                    recorded.update(chunk)
                todo -= len(chunk)
            record.check_prefix(recorded)
            record.prefix_fingerprint = self.fingerprint.hexdigest()
            record.fingerprint_version = self.fingerprint.version
            self._check_worker_alignment(saver, record.rows_done)
            if self.n_items is None:
                self.n_items = record.n_items  # a finished generator run knows its count
            if record.row_shape is not None and self.row_shape is None:
                self.row_shape, self.dtype = tuple(record.row_shape), dtype_from_json(record.dtype)
            self.record = record
        else:
            # Update writes at the item's index; overwrite starts a new dataset.
            base = (saver_length(saver) or 0) if self.approach == "append" else 0
            self._check_worker_alignment(saver, base)
            self.record = CompletionRecord(n_items=self.n_items, row_base=base, rows_per_item=self.rows_per_item,
                                           fingerprint_version=ItemFingerprint.VERSION)
            if self.records:
                # Durable before any row is written, so a crash cannot shift row_base.
                saver.write_record(self.record_name, self.record.model_dump(mode="json"))
        if self.row_shape is not None:
            self.record.row_shape, self.record.dtype = list(self.row_shape), dtype_to_json(self.dtype)  # type: ignore[arg-type]
        self.committed = self.record.items_done
        return self.record.items_done

    def _covers_nothing(self, saver: Saver, record: CompletionRecord) -> bool:
        """Whether ``record`` (of an earlier run) vouches for no row this run could keep.

        Its run committed no item, and either this run replaces the dataset
        (overwrite) or no row of that run reached the dataset (append, the
        length still at the record's row base). Such a record must not pin this
        run to the earlier run's items or row base: an overwrite would write
        from that row base into the new, empty dataset.
        """
        if record.items_done or self.write_mode != "driver":
            return False
        if self.approach == "overwrite":
            return True
        return self.approach == "append" and saver_length(saver) == record.row_base

    def _check_worker_alignment(self, saver: Saver, next_row: int) -> None:
        """With ``write="workers"``, refuse before anything is written what workers cannot do."""
        if self.write_mode != "workers":
            return
        if type(saver).row_chunk is Saver.row_chunk:
            raise ValueError(
                f"write='workers' needs a saver that reports row_chunk; {type(saver).__name__} does not"
            )
        row_chunk = saver.row_chunk  # None while the dataset does not exist: then it starts at row 0
        if row_chunk:
            _items_to_boundary(next_row, self.k, int(row_chunk))

    def _adopt_dataset_rows(self, saver: Saver, resuming: bool) -> None:
        """Rows already in the dataset fix the row shape and dtype, not the run's first result."""
        if self.approach == "overwrite" and not resuming:
            return  # that dataset is about to be replaced
        spec = saver.row_spec()
        if spec is not None:
            self._take_rows(spec[0], spec[1])

    def _take_rows(self, row_shape: Sequence[int], dtype: Any, check_fill: bool = True) -> None:
        """The shape and dtype of the run's rows from now on (the fill value must fit the dtype)."""
        dtype = np.dtype(dtype)
        if check_fill:
            check_fill_value(self.fill_value, dtype)
        self.row_shape, self.dtype = tuple(row_shape), dtype
        if self.record is not None:
            self.record.row_shape, self.record.dtype = list(self.row_shape), dtype_to_json(dtype)

    def _make_writer(self) -> RowWriter | None:
        saver = self.saver
        if saver is None:
            return None
        total = None if self.n_items is None else self.record.row_base + self.n_items * self.k  # type: ignore[union-attr]
        if self.write_mode == "workers":
            return RowWriter(saver.clone(approach="update"), "update", total)
        if self.approach == "overwrite" and self.record is not None and self.record.items_done > 0:
            # Resuming: overwriting would discard the rows the records vouch for.
            return RowWriter(saver.clone(approach="append"), "append", total)
        return RowWriter(saver, self.approach, total)

    def _default_batch_size(self, n_workers: int, first: int) -> int:
        if self.manager.batch_size is not None:
            size = self.manager.batch_size
        elif n_workers == 1:
            size = min(self.save_interval, 4096)
        else:
            size = max(1, self.save_interval // n_workers)
            if self.n_items is not None:
                size = min(size, max(1, math.ceil((self.n_items - first) / (4 * n_workers))))
            size = min(size, 4096)
        return size

    def _batches(self, first: int, size: int) -> Iterator[_Batch]:
        start = first
        while True:
            if self.n_items is not None and start >= self.n_items and self.record is not None \
                    and self.record.n_items is not None:
                # A generator resumed against a finished record must end where it ended.
                extra = list(itertools.islice(self.items, 1))
                if extra:
                    raise ResumeMismatchError(
                        f"completion records are for {self.n_items} items, got more; pass resume=False"
                    )
                return
            n = size
            if self.worker_write is not None:
                # Workers write whole chunks only: batches start and end on chunk boundaries.
                chunk = self.worker_write.row_chunk
                step = _aligned_step(chunk, self.k)
                lead = _items_to_boundary(self.record.row_base + start * self.k, self.k, chunk)  # type: ignore[union-attr]
                n = lead or max(step, size // step * step)
            items = list(itertools.islice(self.items, n))
            if not items:
                return
            yield _Batch(start, items, self.fingerprint.encode(items))
            start += len(items)

    # --- the loop -------------------------------------------------------------

    def execute(self) -> TaskReport:
        t0 = time.perf_counter()
        handle = ExecutorHandle(self.manager.executor, self.manager.n_workers)
        token = uuid.uuid4().hex
        session = contextlib.ExitStack()
        failed = True
        try:
            # A refused call writes nothing: a closed saver and a task that cannot
            # reach the workers are found before the completion record is written.
            if self.saver is not None:
                # One saver session for the run: staged rows are written at checkpoints,
                # and an "overwrite" saver replaces the dataset once, not at every save.
                session.enter_context(self.saver)
            handle.check_picklable(run_batch, self.manager.task, self.task_kwargs, names=(
                f"the task {_task_name(self.manager.task)}", "task_kwargs"))
            first = self._open_records()
            self.report.items_skipped = first
            self.writer = self._make_writer()
            self.job = BatchJob(
                task=self.manager.task, token=token, task_kwargs=self.task_kwargs, retries=self.retries,
                vectorised=is_vectorised(self.manager.task), rows_per_item=self.rows_per_item,
                stack=self.saver is not None, driver_pid=os.getpid(),
            )
            self.bar = tqdm(total=self.n_items, initial=first, unit="item", file=sys.stderr,
                            disable=not self.progress, dynamic_ncols=True, leave=self.progress)
            try:
                self._loop(handle, first)
            except BaseException:
                # Keep what is finished and in order (e.g. on KeyboardInterrupt), then re-raise.
                self._checkpoint_safely()
                raise
            finally:
                self.bar.close()
            failed = False
            self._finish()
        finally:
            handle.shutdown(cancel=failed)
            # Tears the task down if workers ran it in this process (serial, threads, a
            # dask cluster of threads, an executor of the user's); worker processes
            # tear down at their exit. Its error must not hide the run's nor skip the rest.
            try:
                release_task(token)
            except Exception as exc:
                warnings.warn(f"the task's teardown() raised {type(exc).__name__}: {exc}", RuntimeWarning,
                              stacklevel=2)
            if getattr(self, "writer", None) is not None:
                self.writer.close()  # type: ignore[union-attr]
            session.close()
            self.report.elapsed_seconds = time.perf_counter() - t0
        return self.report

    def _loop(self, handle: ExecutorHandle, first: int) -> None:
        window = self.max_in_flight or (1 if handle.n_workers == 1 else 2 * handle.n_workers + 1)
        batches = self._batches(first, self._default_batch_size(handle.n_workers, first))
        self.reorder: ReorderBuffer[tuple[_Batch, BatchOutcome]] = ReorderBuffer(first)
        in_flight: dict[cf.Future, _Batch] = {}
        suspects: deque[_Batch] = deque()  # batches that were running when a worker died
        exhausted = False
        while True:
            if suspects:
                if not in_flight:  # one at a time, so a death points at one batch
                    batch = suspects.popleft()
                    in_flight[self._submit(handle, batch)] = batch
            else:
                while (self.first_failure is None and not exhausted
                       and len(in_flight) + len(self.reorder) < window):
                    if self.write_mode == "workers" and self.worker_write is None:
                        if self.row_shape is not None:
                            self._worker_write()  # creates the dataset: chunk rows are known now
                        elif in_flight:
                            break  # the driver writes batches itself until it knows the row shape
                    upcoming = next(batches, None)
                    if upcoming is None:
                        exhausted = True
                        break
                    batch = upcoming
                    in_flight[self._submit(handle, batch)] = batch
            if not in_flight:
                break
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                batch = in_flight.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:
                    if not handle.is_worker_death(exc):
                        raise
                    handle.recover()
                    self._after_death(batch, exc, suspects)
                    continue
                self._accept(batch, outcome)
            self._release_ready()
        if self.first_failure is None and self.n_items is not None and self.reorder.next_start < self.n_items:
            raise ResumeMismatchError(
                f"completion records are for {self.n_items} items, the items ended after "
                f"{self.reorder.next_start}; pass resume=False"
            )

    def _submit(self, handle: ExecutorHandle, batch: _Batch) -> cf.Future:
        span = f"items {batch.start}..{batch.start + len(batch.items) - 1}"
        names = (f"the task {_task_name(self.manager.task)} (or its task_kwargs)", "the start index",
                 f"one of {span}", "the worker's saver")
        result_name = f"the results of {span}"
        if self.worker_write is not None:
            write = self.worker_write
            self._reserve(write.row_base + (batch.start + len(batch.items)) * self.k)
            return handle.submit(run_batch, self.job, batch.start, batch.items, write,
                                 names=names, result_name=result_name)
        return handle.submit(run_batch, self.job, batch.start, batch.items, names=names, result_name=result_name)

    def _reserve(self, end_row: int) -> None:
        """Grow the dataset before workers write up to ``end_row`` (all rows at once when the count is known)."""
        if end_row <= self.reserved:
            return
        if self.n_items is not None:
            end_row = max(end_row, self.record.row_base + self.n_items * self.k)  # type: ignore[union-attr]
        self.writer.saver.reserve(end_row, self.row_shape, self.dtype)  # type: ignore[union-attr, arg-type]
        self.writer.flush()  # type: ignore[union-attr]  # workers open the dataset afresh and must see it
        self.reserved = end_row

    def _worker_write(self) -> WorkerWrite:
        if self.worker_write is None:
            assert self.row_shape is not None and self.dtype is not None and self.record is not None
            self._reserve(self.record.row_base + max(self.committed, 1) * self.k)
            row_chunk = self.writer.saver.row_chunk  # type: ignore[union-attr]
            if not row_chunk:
                raise ValueError(
                    f"write='workers' needs a saver that reports row_chunk; {type(self.saver).__name__} does not"
                )
            self.worker_write = WorkerWrite(
                saver_bytes=pickle.dumps(self.saver.clone(approach="update")),  # type: ignore[union-attr]
                row_base=self.record.row_base, row_shape=self.row_shape, dtype=self.dtype,
                fill_value=self.fill_value, row_chunk=int(row_chunk),
            )
        return self.worker_write

    def _after_death(self, batch: _Batch, exc: BaseException, suspects: deque[_Batch]) -> None:
        """A worker died: rerun the batch alone; halve a batch that kills alone; fail a lone item."""
        if not batch.isolated:
            suspects.append(_Batch(batch.start, batch.items, batch.encoded, isolated=True))
        elif len(batch.items) > 1:
            half = len(batch.items) // 2
            suspects.appendleft(_Batch(batch.start + half, batch.items[half:], batch.encoded[half:], isolated=True))
            suspects.appendleft(_Batch(batch.start, batch.items[:half], batch.encoded[:half], isolated=True))
        elif batch.deaths < self.retries:
            suspects.appendleft(_Batch(batch.start, batch.items, batch.encoded, isolated=True, deaths=batch.deaths + 1))
        else:
            failure = ItemFailure(batch.start, WorkerDiedError.__name__,
                                  f"the worker process died while processing item {batch.start} "
                                  f"({type(exc).__name__}: {exc})")
            outcome = BatchOutcome(batch.start, 1, ok=np.zeros(1, dtype=bool), failures=[failure])
            if self.saver is None:
                outcome.data = [None]
            self._accept(batch, outcome)

    def _accept(self, batch: _Batch, outcome: BatchOutcome) -> None:
        self.bar.update(outcome.count)
        self._note_failures(outcome.failures)
        self.reorder.put(outcome.start, outcome.count, (batch, outcome))

    def _note_failures(self, failures: list[ItemFailure]) -> None:
        if not failures:
            return
        if self.on_error == "raise":
            first = failures[0]
            if self.first_failure is None or first.index < self.first_failure.index:
                self.first_failure = first
        self.failures_seen += len(failures)
        self.bar.set_postfix(failed=self.failures_seen, refresh=False)

    def _settle(self, outcome: BatchOutcome) -> BatchOutcome:
        """Check a batch's rows against the rows before it (in item order, so deterministically)."""
        if self.saver is None or outcome.rows_written:
            return outcome  # results as they are; a worker that wrote its rows checked them
        known = {f.index for f in outcome.failures}
        settled = settle_shapes(outcome, self.row_shape, self.rows_per_item, self.dtype)
        if self.row_shape is None and settled.row_shape is not None:
            # The fill value must fit the dataset's dtype, which the saver decides.
            self._take_rows(settled.row_shape, settled.dtype, check_fill=False)
            if self._create_dataset():  # its dtype (the saver's dtype= option) rules from now on
                settled = settle_shapes(outcome, self.row_shape, self.rows_per_item, self.dtype)
            assert self.dtype is not None
            check_fill_value(self.fill_value, self.dtype)
        self._note_failures([f for f in settled.failures if f.index not in known])
        return settled

    def _create_dataset(self) -> bool:
        """Create the dataset now that the first result is known; True if its dtype differs.

        The saver may store the rows in another dtype than the first result's
        (a ``dtype=`` option): every result, the first batch's included, is then
        judged against that one. Savers that cannot preallocate keep the first
        result's dtype until their first save.
        """
        saver = self.saver
        assert saver is not None and self.record is not None
        assert self.row_shape is not None and self.dtype is not None
        # An overwrite run that gets here has saved nothing yet: the dataset there
        # now is the old one, which it replaces (its dtype is not the run's).
        if saver.row_spec() is None or self.approach == "overwrite":
            try:
                saver.reserve(self.record.row_base, self.row_shape, self.dtype)
            except NotImplementedError:
                return False
            except DTypeMismatchError:
                pass  # made with its dtype= option, which the first result does not fit: it fails alone
        spec = saver.row_spec()
        if spec is None or np.dtype(spec[1]) == self.dtype:
            return False
        self._take_rows(self.row_shape, spec[1])
        return True

    def _release_ready(self) -> None:
        if self.release_stopped:
            return  # a batch was lost to an error: nothing after it may be committed
        try:
            for batch, outcome in self.reorder.pop_ready():
                outcome = self._settle(outcome)
                if self.first_failure is not None and outcome.start + outcome.count > self.first_failure.index:
                    self._release(batch, outcome, upto=self.first_failure.index - outcome.start)
                    break
                self._release(batch, outcome, upto=outcome.count)
                if self.pending_items >= self.save_interval:
                    self._checkpoint()
        except BaseException:
            self.release_stopped = True
            raise

    def _release(self, batch: _Batch, outcome: BatchOutcome, upto: int) -> None:
        """Append the first ``upto`` items of a batch, in order, to what the next checkpoint saves."""
        if upto <= 0:
            return
        if upto < outcome.count:
            outcome = _head(outcome, upto, self.k)
        # Updated on a copy, kept only once the batch is released: an error on the
        # way must not leave the fingerprint ahead of the items committed.
        fingerprint = self.fingerprint.copy()
        fingerprint.update_encoded(batch.encoded, upto)
        if self.saver is None:
            self.results.extend(outcome.data)  # type: ignore[union-attr]
        elif outcome.rows_written:
            self.report.rows_saved += outcome.rows_written
            self.report.rows_saved_by_workers += outcome.rows_written
        else:
            first_row = self.record.row_base + outcome.start * self.k  # type: ignore[union-attr]
            self.pending.append((first_row, outcome))
            if self.write_mode == "workers":
                self._write_pending()  # now, before any worker writes next to these rows
        self.report.failures.extend(outcome.failures)
        if self.record is not None:
            # Recorded with the checkpoint that covers these items, not before: a rerun
            # that does them again must not find their failures twice.
            self.pending_failures.extend(f.to_record() for f in outcome.failures)
        self.report.items_done += upto
        self.fingerprint = fingerprint
        self.committed = outcome.start + upto
        self.pending_items += upto

    def _checkpoint(self) -> None:
        """Save the released rows, flush, then record them as done (in this order, for crash safety)."""
        if self.saver is None or self.record is None or self.committed == self.record.items_done:
            self.pending_items = 0
            return
        if self.pending:
            if self.row_shape is None:
                return  # only failures so far: their fill rows need a row shape; wait
            self._write_pending()
        self.writer.flush()  # type: ignore[union-attr]
        self.record.items_done = self.committed
        if self.pending_failures and self.records:
            # Written once, before the record that counts it: a checkpoint costs the same
            # however many failures came before it.
            name = failures_doc_name(self.record_name, self.record.failure_docs)
            self.saver.write_record(name, {"failures": self.pending_failures})
            self.record.failure_docs += 1
        self.pending_failures = []
        self.record.prefix_fingerprint = self.fingerprint.hexdigest()
        if self.records:
            self.saver.write_record(self.record_name, self.record.model_dump(mode="json"))
        self.pending_items = 0
        self.checkpoints += 1
        if _is_int(self.consolidate) and self.checkpoints % self.consolidate == 0:  # type: ignore[operator]
            self._consolidate()

    def _consolidate(self) -> None:
        self.saver.consolidate()  # type: ignore[union-attr]
        self.report.consolidations += 1
        self.consolidated_at = self.checkpoints

    def _write_pending(self) -> None:
        if self.row_shape is None or not self.pending:
            return
        # Fill rows of wholly failed batches take the dtype the rows around them get.
        dtype = np.result_type(self.dtype, *[o.data.dtype for _, o in self.pending if o.data is not None])
        firsts, parts = [], []
        for first_row, outcome in self.pending:
            firsts.append(first_row)
            parts.append(expand_rows(outcome, self.k, self.row_shape, dtype, self.fill_value))
        for first_row, run in positions_of(firsts, parts):
            rows = concat_rows(run)
            self.writer.write(first_row, rows)  # type: ignore[union-attr]
            self.report.rows_saved += len(rows)
        self.pending.clear()
        spec = self.writer.saver.row_spec()  # type: ignore[union-attr]
        if spec is not None and np.dtype(spec[1]) != self.dtype:
            self.dtype = np.dtype(spec[1])  # from now on, fills follow the dataset's dtype
            self.record.dtype = dtype_to_json(self.dtype)  # type: ignore[union-attr]
        if self.write_mode == "workers":
            self.writer.flush()  # type: ignore[union-attr]

    def _checkpoint_safely(self) -> None:
        try:
            self._release_ready()
            self._checkpoint()
        except Exception:
            pass  # the original error matters more; the records still describe durable data

    def _finish(self) -> None:
        self._checkpoint()
        failure = self.first_failure
        if failure is not None:
            raise TaskError(
                f"item {failure.index} failed: {failure.exc_type}: {failure.message}",
                item_index=failure.index, traceback_text=failure.traceback,
            )
        if self.record is not None and self.saver is not None:
            if self.record.items_done < self.committed:
                # Only failures, so no row shape for their fill rows: nothing could be
                # saved. The report lists them; a rerun tries these items again.
                self.report.results = self.results
                return
            self.record.n_items = self.committed
            self.record.complete = True
            if self.records:
                self.saver.write_record(self.record_name, self.record.model_dump(mode="json"))
            if self.consolidate is not None and not (self.checkpoints and self.consolidated_at == self.checkpoints):
                self._consolidate()  # unless the last checkpoint just did
        self.report.results = self.results


def _task_name(task: Any) -> str:
    fn = getattr(task, "fn", task)  # a plain function wrapped as a Task
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', '?')}.{name}"


def _head(outcome: BatchOutcome, n: int, k: int) -> BatchOutcome:
    """The first ``n`` items of a batch outcome."""
    ok = None if outcome.ok is None else outcome.ok[:n]
    data = outcome.data
    if isinstance(data, list):
        data = data[:n]
    elif data is not None:
        kept = n if outcome.ok is None else int(outcome.ok[:n].sum())
        data = data[: kept * k]
    failures = [f for f in outcome.failures if f.index < outcome.start + n]
    # A worker that wrote its batch wrote these items' rows too: they are saved, not pending.
    written = n * k if outcome.rows_written else 0
    return BatchOutcome(outcome.start, n, data, ok, failures, outcome.row_shape, outcome.dtype, written)


def _aligned_step(row_chunk: int, k: int) -> int:
    """Fewest items whose rows fill whole chunks."""
    return math.lcm(row_chunk, k) // k


def _items_to_boundary(row: int, k: int, row_chunk: int) -> int:
    """Items to take from ``row`` on so that the next batch starts on a chunk boundary."""
    for n in range(_aligned_step(row_chunk, k)):
        if (row + n * k) % row_chunk == 0:
            return n
    raise ValueError(
        f"rows_per_item={k} never brings row {row} onto a boundary of {row_chunk}-row chunks; "
        "use write='driver'"
    )


__all__ = ["ON_ERROR", "WRITE_MODES", "TaskManager", "WorkerDiedError"]
