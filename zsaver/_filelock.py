"""Exclusive locks between processes *and* threads, kept as bytes of one lock file.

zarr 3 has no process synchronizer; savers (dataset and chunk locks) and shard
stores (per-shard consolidation locks) use this instead. Every lock of a store
is one byte of the same empty file, ``<root>/.zsaver.lock``, locked with an
open-file-description (OFD) byte-range lock, so a store never holds more than
that one lock file, however many datasets and stripes it locks.

Threads of one process exclude each other through a thread lock per byte;
processes through the byte-range lock. A process opens each lock file once and
keeps that descriptor while any lock in it is held (idle descriptors are closed
once more than :data:`MAX_IDLE_FILES` accumulate), so no release ever closes a
descriptor through which another lock is held: where a file system implements
byte-range locks per process (FUSE file systems, some lock managers), closing
any descriptor of a file drops every lock the process holds on it. A child made
by ``fork`` forgets the inherited descriptors and opens its own. A lock file
deleted and made again meanwhile (zsaver never deletes one) is noticed after
each acquisition, by its inode, and the lock is taken again on the new file.

Where the platform has no OFD locks (not Linux), each byte becomes its own
``flock``-ed file in a directory next to the lock file (``.zsaver.lock.d/<byte>``)
instead: the same exclusion, more files.

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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

#: The lock file at the root of every locally stored zarr tree zsaver writes to.
LOCK_FILE_NAME = ".zsaver.lock"
#: Where the per-byte lock files go on platforms without OFD locks.
FALLBACK_DIR_SUFFIX = ".d"
#: Bytes [0, STORE_LOCK_SPAN) belong to the shard store's own locks.
STORE_LOCK_SPAN = 1024
#: Bytes per dataset: the dataset lock and its chunk-lock stripes.
DATASET_LOCK_SPAN = 1024
#: Open lock files with no lock held that a process keeps before closing the oldest.
MAX_IDLE_FILES = 32

_OFD_SETLKW: int | None = getattr(fcntl, "F_OFD_SETLKW", None)
_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)


@dataclass(eq=False)
class _OpenLockFile:
    """A lock file this process has open, and how many of its locks are held through it."""

    path: str
    fd: int
    inode: tuple[int, int]
    held: int = 0


_registry_guard = threading.Lock()
_thread_locks: dict[tuple[str, int], threading.Lock] = {}
_open_files: dict[str, _OpenLockFile] = {}  # by path, oldest first


def _reset_after_fork() -> None:
    # A lock held by another thread at fork time would never be released in the child,
    # and the inherited descriptors share their locks with the parent's: start afresh
    # (the inherited descriptors are left open, not closed: a lock object the child
    # inherited may still release through one).
    global _registry_guard, _thread_locks, _open_files
    _registry_guard = threading.Lock()
    _thread_locks = {}
    _open_files = {}


os.register_at_fork(after_in_child=_reset_after_fork)


def _thread_lock_for(key: tuple[str, int]) -> threading.Lock:
    with _registry_guard:
        lock = _thread_locks.get(key)
        if lock is None:
            lock = _thread_locks[key] = threading.Lock()
        return lock


def _inode(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _check_out(path: str) -> _OpenLockFile:
    """The process's open descriptor of ``path``, opened on first use."""
    with _registry_guard:
        entry = _open_files.get(path)
        if entry is None:
            fd = _open_lock_file(path)
            entry = _open_files[path] = _OpenLockFile(path, fd, _inode(os.fstat(fd)))
        entry.held += 1
        return entry


def _forget(entry: _OpenLockFile) -> None:
    """Open ``entry``'s path afresh from now on (its file was replaced); its last holder closes it."""
    with _registry_guard:
        if _open_files.get(entry.path) is entry:
            del _open_files[entry.path]


def _names_inode(path: str, inode: tuple[int, int]) -> bool:
    try:
        return _inode(os.stat(path)) == inode
    except FileNotFoundError:
        return False


def _check_in(entry: _OpenLockFile) -> None:
    """One lock fewer held through ``entry``; close descriptors no lock needs beyond the bound."""
    with _registry_guard:
        entry.held -= 1
        if _open_files.get(entry.path) is not entry:
            if entry.held == 0:
                os.close(entry.fd)  # a replaced file's last holder is gone
            return
        idle = [e for e in _open_files.values() if e.held == 0]
        for stale in idle[: max(0, len(idle) - MAX_IDLE_FILES)]:
            del _open_files[stale.path]
            os.close(stale.fd)


def lock_file(root: str | os.PathLike[str]) -> Path:
    """The lock file of the zarr tree at ``root``."""
    return Path(root) / LOCK_FILE_NAME


def dataset_lock_base(dataset_path: str) -> int:
    """The first byte of ``dataset_path``'s block of locks in its store's lock file.

    Example:
        >>> dataset_lock_base("runs/a") >= STORE_LOCK_SPAN
        True
        >>> dataset_lock_base("runs//a/") == dataset_lock_base("runs/a")
        True
    """
    # Spellings zarr takes for one node ("a//b", "/a/b/", "a/./b") must share the block.
    canonical = "/".join(part for part in dataset_path.split("/") if part not in ("", "."))
    digest = hashlib.blake2b(canonical.encode(), digest_size=6).digest()
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
        self._file: _OpenLockFile | None = None
        self._thread_lock: threading.Lock | None = None

    def acquire(self) -> None:
        """Block until the lock is held by this object."""
        thread_lock = _thread_lock_for((self.path, self.offset))
        thread_lock.acquire()
        try:
            self._file = self._lock_current_file()
        except BaseException:
            thread_lock.release()
            raise
        self._thread_lock = thread_lock

    def _lock_current_file(self) -> _OpenLockFile:
        if _OFD_SETLKW is not None:
            path = self.path
        else:  # no OFD locks: one flock-ed file per byte
            path = os.path.join(self.path + FALLBACK_DIR_SUFFIX, str(self.offset))
        while True:
            entry = _check_out(path)
            try:
                if _OFD_SETLKW is not None:
                    fcntl.fcntl(entry.fd, _OFD_SETLKW, _flock_struct(fcntl.F_WRLCK, self.offset))
                else:
                    fcntl.flock(entry.fd, fcntl.LOCK_EX)
            except BaseException:
                _check_in(entry)
                raise
            if _names_inode(path, entry.inode):
                return entry
            # The file was deleted (and maybe made again) while we waited: a lock on
            # the old inode excludes nobody who opens the path now. Take it again.
            _forget(entry)
            self._unlock(entry)

    def _unlock(self, entry: _OpenLockFile) -> None:
        try:
            if _OFD_SETLK is not None:
                fcntl.fcntl(entry.fd, _OFD_SETLK, _flock_struct(fcntl.F_UNLCK, self.offset))
            else:
                fcntl.flock(entry.fd, fcntl.LOCK_UN)
        finally:
            _check_in(entry)

    def release(self) -> None:
        """Release the lock; releasing an unheld lock is an error."""
        if self._file is None or self._thread_lock is None:
            raise RuntimeError(f"lock {self.path} (byte {self.offset}) is not held")
        entry, thread_lock = self._file, self._thread_lock
        self._file = self._thread_lock = None
        try:
            self._unlock(entry)
        finally:
            thread_lock.release()

    @property
    def held(self) -> bool:
        return self._file is not None

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
