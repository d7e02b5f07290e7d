"""A bounded LRU of open shard files, checked against the file on disk before each use.

Consolidation replaces a shard by renaming a new file over it, so a cached handle
is valid only while the path still names the same inode (and size and mtime).
The cached descriptor keeps the old inode allocated, so its replacement cannot
get the same inode number: the check holds even where timestamps are coarse.
Handles are reference-counted: an evicted handle is closed only when the last
reader using it is done, so a concurrent ``pread`` never hits a closed descriptor.
The descriptors are raw ``os.open`` ones, which the garbage collector does not
close: a cache dropped without :meth:`ShardHandleCache.close_all` closes them
through a finaliser.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

#: Times :meth:`ShardHandleCache.acquire` opens a shard that is replaced meanwhile
#: (by consolidations in another process) before it gives up: about 0.9 s of waits in all.
_OPEN_ATTEMPTS = 100

IndexEntry = tuple[int, int]
Signature = tuple[int, int, int, int]


class ShardContainer(Protocol):
    """What the store needs from a container format (HDF5, zip)."""

    suffix: str

    def read_index(self, path: str) -> dict[str, IndexEntry]: ...
    def read_member(self, path: str, name: str) -> bytes: ...
    def write(self, path: str, members: Iterable[tuple[str, bytes | memoryview]]) -> None: ...


def signature(st: os.stat_result) -> Signature:
    """What identifies one version of a file: device, inode, size, mtime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ShardHandle:
    """An open shard: its descriptor, its member index and the file version it belongs to."""

    def __init__(self, path: str, fd: int, sig: Signature, index: dict[str, IndexEntry],
                 container: ShardContainer) -> None:
        self.path, self.fd, self.signature, self.index = path, fd, sig, index
        self.container = container
        self.users = 0
        self.evicted = False

    def read(self, name: str) -> bytes | None:
        """The bytes of member ``name``, or None if the shard has no such member."""
        entry = self.index.get(name)
        if entry is None:
            return None
        offset, length = entry
        if offset < 0:  # compressed or chunked member written by another tool
            return self.container.read_member(self.path, name)
        data = os.pread(self.fd, length, offset)
        while len(data) < length:  # pread may return short reads on some filesystems
            more = os.pread(self.fd, length - len(data), offset + len(data))
            if not more:
                raise OSError(f"shard {self.path} is truncated at member {name!r}")
            data += more
        return data


class ShardHandleCache:
    """Open shard handles, at most ``max_open`` idle ones, safe across threads and fork.

    Example:
        >>> from zsaver.stores._zip import ZipContainer
        >>> cache = ShardHandleCache(ZipContainer(), max_open=4)
        >>> cache.acquire("/nonexistent.zip") is None
        True
    """

    def __init__(self, container: ShardContainer, max_open: int = 128) -> None:
        self.container = container
        self.max_open = max(1, int(max_open))
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._handles: OrderedDict[str, ShardHandle] = OrderedDict()
        # Holds the dict, not the cache: a store copy dropped unclosed (zarr's
        # read-only views, unpickled copies) must not leak a descriptor per shard.
        weakref.finalize(self, _close_handles, self._handles).atexit = False

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            with _fork_guard:
                if self._pid == os.getpid():
                    return  # another thread of this child did it meanwhile
                # The child inherited copies of the descriptors; drop them and the
                # lock (which another parent thread may have held at fork time). The
                # pid is set last: until then other threads of the child wait here,
                # not reading through a descriptor about to be closed.
                self._lock = threading.Lock()
                _close_handles(self._handles)
                self._pid = os.getpid()

    def acquire(self, path: str) -> ShardHandle | None:
        """A handle on the current version of ``path`` (None if there is no such file).

        Call :meth:`release` when done with it.
        """
        self._check_fork()
        for attempt in range(_OPEN_ATTEMPTS):
            if attempt >= 3:  # a consolidation loop replaces it again and again: let it pass
                time.sleep(min(0.0005 * attempt, 0.01))
            try:
                sig = signature(os.stat(path))
            except FileNotFoundError:
                return None
            with self._lock:
                handle = self._handles.get(path)
                if handle is not None and handle.signature == sig:
                    self._handles.move_to_end(path)
                    handle.users += 1
                    return handle
            handle = self._open(path)
            if handle is None:
                continue  # replaced while we opened it: look again
            with self._lock:
                stale = self._handles.pop(path, None)
                if stale is not None:
                    self._retire(stale)
                self._handles[path] = handle
                handle.users += 1
                while len(self._handles) > self.max_open:
                    _, evicted = self._handles.popitem(last=False)
                    self._retire(evicted)
            return handle
        raise OSError(f"shard {path} was replaced {_OPEN_ATTEMPTS} times while being opened")

    def _open(self, path: str) -> ShardHandle | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            sig = signature(os.fstat(fd))
            index = self.container.read_index(path)
            # The index was read by path: make sure the path still names our inode.
            if signature(os.stat(path)) != sig:
                _close_quietly(fd)
                return None
        except FileNotFoundError:
            _close_quietly(fd)
            return None
        except BaseException:
            _close_quietly(fd)
            raise
        return ShardHandle(path, fd, sig, index, self.container)

    def release(self, handle: ShardHandle) -> None:
        with self._lock:
            handle.users -= 1
            if handle.evicted and handle.users <= 0:
                _close_quietly(handle.fd)

    def _retire(self, handle: ShardHandle) -> None:
        # caller holds self._lock
        handle.evicted = True
        if handle.users <= 0:
            _close_quietly(handle.fd)

    def close_all(self) -> None:
        """Close every idle handle (handles in use close when released)."""
        self._check_fork()
        with self._lock:
            for handle in self._handles.values():
                self._retire(handle)
            self._handles.clear()

    def __len__(self) -> int:
        return len(self._handles)


#: Serialises the clean-up of inherited handles in a forked child (a fresh lock there).
_fork_guard = threading.Lock()


def _new_fork_guard() -> None:
    global _fork_guard
    _fork_guard = threading.Lock()


os.register_at_fork(after_in_child=_new_fork_guard)


def _close_handles(handles: OrderedDict[str, ShardHandle]) -> None:
    """Close the descriptors of ``handles`` and empty it (in place: a finaliser holds it)."""
    for handle in handles.values():
        _close_quietly(handle.fd)
    handles.clear()


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
