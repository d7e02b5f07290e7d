"""Exclusive locks between processes *and* threads, kept as bytes of one lock file.

zarr 3 has no process synchronizer; savers (dataset and chunk locks) and shard
stores (per-shard consolidation locks) use this instead. Every lock of a store
is one byte of the same empty file, ``<root>/.zsaver.lock``, locked with an
open-file-description (OFD) byte-range lock, so a store never holds more than
that one lock file, however many datasets and stripes it locks. OFD locks
belong to the descriptor, not the process, so each acquisition opens its own
descriptor and two threads of one process exclude each other; a per-lock
thread lock keeps them exclusive where a file system implements byte-range
locks per process (as NFS's lock managers may). Where the platform has no OFD
locks (not Linux), each byte becomes its own ``flock``-ed file next to the lock
file instead: the same exclusion, more files.

The byte map: the store's own locks use bytes below :data:`STORE_LOCK_SPAN`;
each dataset gets a block of :data:`DATASET_LOCK_SPAN` bytes at
:func:`dataset_lock_base`, chosen by a 48-bit hash of its path. Two datasets
whose hashes collide share one block, which only makes them wait on each other
(their locks are then taken in one consistent order): never a lost lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import threading
from pathlib import Path
from types import TracebackType

#: The lock file at the root of every locally stored zarr tree zsaver writes to.
LOCK_FILE_NAME = ".zsaver.lock"
#: Bytes [0, STORE_LOCK_SPAN) belong to the shard store's own locks.
STORE_LOCK_SPAN = 1024
#: Bytes per dataset: the dataset lock and its chunk-lock stripes.
DATASET_LOCK_SPAN = 1024

_OFD_SETLKW: int | None = getattr(fcntl, "F_OFD_SETLKW", None)
_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)

_registry_guard = threading.Lock()
_thread_locks: dict[tuple[str, int], threading.Lock] = {}


def _reset_after_fork() -> None:
    # A lock held by another thread at fork time would never be released in the child.
    global _registry_guard, _thread_locks
    _registry_guard = threading.Lock()
    _thread_locks = {}


os.register_at_fork(after_in_child=_reset_after_fork)


def _thread_lock_for(key: tuple[str, int]) -> threading.Lock:
    with _registry_guard:
        lock = _thread_locks.get(key)
        if lock is None:
            lock = _thread_locks[key] = threading.Lock()
        return lock


def lock_file(root: str | os.PathLike[str]) -> Path:
    """The lock file of the zarr tree at ``root``."""
    return Path(root) / LOCK_FILE_NAME


def dataset_lock_base(dataset_path: str) -> int:
    """The first byte of ``dataset_path``'s block of locks in its store's lock file.

    Example:
        >>> dataset_lock_base("runs/a") >= STORE_LOCK_SPAN
        True
    """
    digest = hashlib.blake2b(dataset_path.encode(), digest_size=6).digest()
    return STORE_LOCK_SPAN + int.from_bytes(digest, "big") * DATASET_LOCK_SPAN


def _open_lock_file(path: str) -> int:
    """Open (creating) the lock file; its directory is made only when missing."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)


def _flock_struct(lock_type: int, offset: int) -> bytes:
    # struct flock {short l_type, l_whence; off_t l_start, l_len; pid_t l_pid}; l_pid must
    # be 0 for OFD locks. "0q" pads the end to the struct's 8-byte alignment.
    return struct.pack("@hhqqi0q", lock_type, os.SEEK_SET, offset, 1, 0)


class FileLock:
    """An exclusive lock on byte ``offset`` of the file ``path`` (created if missing).

    The file stays empty and is never deleted: deleting a lock file while another
    process waits on it would let two holders in.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), ".zsaver.lock")
        >>> with FileLock(path, 7), FileLock(path, 8):  # two locks, one file
        ...     pass
    """

    def __init__(self, path: str | os.PathLike[str], offset: int = 0) -> None:
        if offset < 0:
            raise ValueError(f"a lock offset is a byte position >= 0, got {offset}")
        self.path = os.path.abspath(os.fspath(path))
        self.offset = offset
        self._fd: int | None = None
        self._thread_lock: threading.Lock | None = None

    def _file_path(self) -> str:
        if _OFD_SETLKW is not None:
            return self.path
        return f"{self.path}.{self.offset}"  # no OFD locks: one flock-ed file per byte

    def acquire(self) -> None:
        """Block until the lock is held by this object."""
        thread_lock = _thread_lock_for((self.path, self.offset))
        thread_lock.acquire()
        try:
            fd = _open_lock_file(self._file_path())
            try:
                if _OFD_SETLKW is not None:
                    fcntl.fcntl(fd, _OFD_SETLKW, _flock_struct(fcntl.F_WRLCK, self.offset))
                else:
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
            raise RuntimeError(f"lock {self.path} (byte {self.offset}) is not held")
        fd, thread_lock = self._fd, self._thread_lock
        self._fd = self._thread_lock = None
        try:
            if _OFD_SETLK is not None:
                fcntl.fcntl(fd, _OFD_SETLK, _flock_struct(fcntl.F_UNLCK, self.offset))
            else:
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
