"""Turn an ``executor=`` argument into one small interface: submit -> concurrent.futures.Future.

"serial", "threads" and "processes" map onto concurrent.futures; any Executor
is used as given; a dask.distributed Client goes through :mod:`._dask`, which
is imported only when a Client is passed, so dask stays optional.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from zsaver.errors import UnpicklableError, WorkerError

EXECUTOR_NAMES = ("serial", "threads", "processes")


def _call_pickled(payload: bytes, result_name: str) -> bytes:
    """Run a call pickled by the driver; return its result pickled (in a worker process)."""
    fn, args = pickle.loads(payload)
    try:
        result = fn(*args)
    except Exception as exc:
        raise _portable(exc) from None
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise UnpicklableError(
            f"{result_name} cannot be pickled to send {'them' if result_name.endswith('s') else 'it'} "
            f"back from the worker process: {type(exc).__name__}: {exc}"
        ) from None


#: How often a pool worker checks that the driver is still alive, in seconds.
PARENT_CHECK_SECONDS = 0.5


def exit_with_parent(driver_pid: int) -> None:
    """Pool initializer: end this worker process once the driver ``driver_pid`` is gone.

    A driver killed with SIGKILL cannot shut its pool down; its idle workers would
    wait on the call queue forever and a busy one could go on writing rows (with
    ``write="workers"``) while a rerun writes the same dataset. The worker's parent
    is the driver ("fork", "spawn") or a fork server that ends with the driver
    ("forkserver"): either way, the worker goes when its parent changes, or when
    no process ``driver_pid`` is left.
    """
    parent = os.getppid()

    def driver_alive() -> bool:
        try:
            os.kill(driver_pid, 0)
        except (ProcessLookupError, PermissionError):  # gone, or its pid now another user's
            return False
        return True

    def watch() -> None:
        while os.getppid() == parent and driver_alive():
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="zsaver-parent-watch", daemon=True).start()


def _portable(exc: Exception) -> Exception:
    """``exc`` if the driver can unpickle it, else a WorkerError telling what it was.

    An exception whose class cannot be rebuilt from its pickle (say, an
    ``__init__`` with two required arguments) breaks the pool's result pipe in
    the driver, which then looks like a dead worker.
    """
    try:
        pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
        return exc
    except Exception:
        kind = type(exc)
        return WorkerError(f"{kind.__module__}.{kind.__qualname__}: {exc}",
                           "".join(traceback.format_exception(exc)))


def _pickle_call(fn: Callable[..., Any], args: tuple[Any, ...], names: Sequence[str] | None) -> bytes:
    """The pickled call, or UnpicklableError naming the first part that does not pickle."""
    try:
        return pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        parts = [(getattr(fn, "__qualname__", repr(fn)), fn), *zip(names or [f"argument {i}" for i in range(len(args))], args, strict=False)]
        for name, part in parts:
            try:
                pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as part_exc:
                raise UnpicklableError(
                    f"{name} cannot be pickled to send it to the worker processes: "
                    f"{type(part_exc).__name__}: {part_exc} (a process pool needs functions and classes "
                    "defined at the top level of an importable module, not in __main__ of an "
                    "interactive session, a notebook cell or a function)"
                ) from exc
        raise UnpicklableError(
            f"the call cannot be pickled to send it to the worker processes: {type(exc).__name__}: {exc}"
        ) from exc


def _unpickle_into(outer: cf.Future, inner: cf.Future) -> None:
    if inner.cancelled():
        outer.cancel()
        return
    if not outer.set_running_or_notify_cancel():
        return
    exc = inner.exception()
    if exc is not None:
        outer.set_exception(exc)
        return
    try:
        outer.set_result(pickle.loads(inner.result()))
    except BaseException as load_exc:
        outer.set_exception(load_exc)


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
        # Calls to process pools are pickled here, in the driver (see ``submit``).
        self.pickles_in_driver = False
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
                self._make_pool = lambda: cf.ProcessPoolExecutor(
                    workers, initializer=exit_with_parent, initargs=(os.getpid(),))
                self._pool = self._make_pool()
                self.pickles_in_driver = True
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
                self._make_pool = lambda: cf.ProcessPoolExecutor(
                    workers, mp_context=ctx, initializer=exit_with_parent, initargs=(os.getpid(),))
                self.pickles_in_driver = True

    @property
    def client(self) -> Any:
        """The dask Client, when the executor is one."""
        return self._pool.client if self.is_dask else None

    def submit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        names: Sequence[str] | None = None,
        result_name: str = "the result",
    ) -> cf.Future:
        """Submit ``fn(*args)``; ``names`` name the arguments in pickling errors.

        For process pools the call is pickled here and the result in the
        worker: a part that does not pickle raises UnpicklableError at once,
        naming it. Left to the pool's feeder thread, such an error fails the
        future late, and a shutdown that cancels futures then waits forever
        for the call that never reached a worker (CPython's pool forgets it).
        """
        if self.pickles_in_driver:
            payload = _pickle_call(fn, args, names)
            inner = self._submit(_call_pickled, payload, result_name)
            outer: cf.Future = cf.Future()
            inner.add_done_callback(lambda done: _unpickle_into(outer, done))
            return outer
        return self._submit(fn, *args)

    def check_picklable(self, fn: Callable[..., Any], /, *args: Any, names: Sequence[str] | None = None) -> None:
        """Raise UnpicklableError now if ``fn(*args)`` could not be sent to a worker process."""
        if self.pickles_in_driver:
            _pickle_call(fn, args, names)

    def _submit(self, fn: Callable[..., Any], /, *args: Any) -> cf.Future:
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
