"""Exclusive locks between processes *and* threads, kept in small lock files.

zarr 3 has no process synchronizer; savers (dataset and chunk locks) and shard
stores (per-shard consolidation locks) use this instead. ``flock`` locks an
open file description, so two opens in one process would already exclude each
other, but on NFS Linux emulates flock with per-process POSIX locks; the
per-path thread lock keeps threads of one process exclusive there too.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType

_registry_guard = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}


def _reset_after_fork() -> None:
    # A lock held by another thread at fork time would never be released in the child.
    global _registry_guard, _thread_locks
    _registry_guard = threading.Lock()
    _thread_locks = {}


os.register_at_fork(after_in_child=_reset_after_fork)


def _thread_lock_for(path: str) -> threading.Lock:
    with _registry_guard:
        lock = _thread_locks.get(path)
        if lock is None:
            lock = _thread_locks[path] = threading.Lock()
        return lock


def _open_lock_file(path: str) -> int:
    """Open (creating) the lock file; its directory is made only when missing."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)


class FileLock:
    """An exclusive lock on ``path`` (created if missing, never deleted).

    Example:
        >>> import tempfile, os
        >>> with FileLock(os.path.join(tempfile.mkdtemp(), "x.lock")):
        ...     pass
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._fd: int | None = None
        self._thread_lock: threading.Lock | None = None

    def acquire(self) -> None:
        """Block until the lock is held by this object."""
        thread_lock = _thread_lock_for(self.path)
        thread_lock.acquire()
        try:
            fd = _open_lock_file(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            thread_lock.release()
            raise
        self._fd, self._thread_lock = fd, thread_lock

    def release(self) -> None:
        """Release the lock; releasing an unheld lock is an error."""
        if self._fd is None or self._thread_lock is None:
            raise RuntimeError(f"lock {self.path} is not held")
        fd, thread_lock = self._fd, self._thread_lock
        self._fd = self._thread_lock = None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            thread_lock.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
