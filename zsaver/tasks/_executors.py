"""Turn an ``executor=`` argument into one small interface: submit -> concurrent.futures.Future.

"serial", "threads" and "processes" map onto concurrent.futures; any Executor
is used as given; a dask.distributed Client goes through :mod:`._dask`, which
is imported only when a Client is passed, so dask stays optional.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

EXECUTOR_NAMES = ("serial", "threads", "processes")


class SerialExecutor(cf.Executor):
    """Runs each call at submit time in the calling thread; the Future is already done."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _looks_like_dask_client(obj: Any) -> bool:
    # Checked by name so that dask is never imported unless the user brought a Client.
    return type(obj).__module__.startswith("distributed") and type(obj).__name__ == "Client"


def validate_executor(executor: Any, n_workers: int | None = None) -> None:
    """Raise ValueError / TypeError for an ``executor=`` or ``n_workers=`` that cannot work."""
    if n_workers is not None and (not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1):
        raise ValueError(f"n_workers must be a positive int or None; got {n_workers!r}")
    if isinstance(executor, str):
        if executor.strip().lower() not in EXECUTOR_NAMES:
            raise ValueError(
                f"executor must be one of {', '.join(map(repr, EXECUTOR_NAMES))}, "
                f"a concurrent.futures.Executor or a dask.distributed.Client; got {executor!r}"
            )
    elif not (isinstance(executor, cf.Executor) or _looks_like_dask_client(executor)):
        raise TypeError(
            "executor must be 'serial', 'threads', 'processes', a concurrent.futures.Executor "
            f"or a dask.distributed.Client; got {type(executor).__name__}"
        )


class ExecutorHandle:
    """The executor of one run: submit, tell worker deaths apart, recover, shut down.

    Example:
        >>> h = ExecutorHandle("serial")
        >>> h.submit(pow, 2, 10).result()
        1024
        >>> h.shutdown()
    """

    def __init__(self, executor: Any = "serial", n_workers: int | None = None) -> None:
        self.is_dask = False
        self.in_process = False  # do tasks run in the driver process?
        self._owned = False  # do we shut it down?
        self._make_pool: Callable[[], cf.Executor] | None = None
        validate_executor(executor, n_workers)
        if isinstance(executor, str):
            name = executor.strip().lower()
            self._owned = True
            if name == "serial":
                self.n_workers = 1
                self.in_process = True
                self._pool: Any = SerialExecutor()
            elif name == "threads":
                self.n_workers = n_workers or min(32, (os.cpu_count() or 1) + 4)
                self.in_process = True
                self._pool = cf.ThreadPoolExecutor(self.n_workers, thread_name_prefix="zsaver")
            else:
                self.n_workers = n_workers or os.cpu_count() or 1
                workers = self.n_workers
                self._make_pool = lambda: cf.ProcessPoolExecutor(workers)
                self._pool = self._make_pool()
        elif _looks_like_dask_client(executor):
            from zsaver.tasks._dask import DaskExecutor

            self.is_dask = True
            self._pool = DaskExecutor(executor)
            self.n_workers = n_workers or self._pool.n_workers
        else:
            self._pool = executor
            self.in_process = isinstance(executor, (cf.ThreadPoolExecutor, SerialExecutor))
            self.n_workers = n_workers or getattr(executor, "_max_workers", None) or os.cpu_count() or 1
            if isinstance(executor, cf.ProcessPoolExecutor):
                # A broken pool cannot be repaired; replace it with a like one we own.
                workers, ctx = self.n_workers, getattr(executor, "_mp_context", None)
                self._make_pool = lambda: cf.ProcessPoolExecutor(workers, mp_context=ctx)

    @property
    def client(self) -> Any:
        """The dask Client, when the executor is one."""
        return self._pool.client if self.is_dask else None

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> cf.Future:
        try:
            return self._pool.submit(fn, *args)
        except cf.BrokenExecutor:
            # A worker died before we saw its future fail: replace the pool and go on.
            self.recover()
            return self._pool.submit(fn, *args)

    def is_worker_death(self, exc: BaseException) -> bool:
        """True when ``exc`` (from ``future.result()``) means the worker died, not the task."""
        if isinstance(exc, cf.BrokenExecutor):
            return True
        return self.is_dask and self._pool.is_worker_death(exc)

    def recover(self) -> None:
        """Replace a pool that a dying worker broke; others need nothing."""
        if self._make_pool is not None and getattr(self._pool, "_broken", False):
            if self._owned:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._make_pool()
            self._owned = True

    def shutdown(self, cancel: bool = False) -> None:
        """Shut down a pool we created; ``cancel`` drops batches not yet started."""
        if self._owned:
            self._pool.shutdown(wait=True, cancel_futures=cancel)


__all__ = ["EXECUTOR_NAMES", "BrokenProcessPool", "ExecutorHandle", "SerialExecutor", "validate_executor"]
