"""Dataset and chunk locks for savers sharing one dataset.

For stores with a local ``root`` directory (zarr's LocalStore, zsaver's shard
stores) the locks are bytes of the store's one lock file, ``<root>/.zsaver.lock``
(see :mod:`zsaver._filelock`), and exclude other processes as well as threads.
The file lives outside every dataset's prefix on purpose: an overwrite deletes
that prefix, and a lock file deleted while held would no longer exclude anyone.

Any other store (memory, zip, remote) gets in-process locks only: savers in one
process exclude each other; savers in different processes are NOT coordinated.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from zsaver._filelock import DATASET_LOCK_SPAN, FileLock, dataset_lock_base, lock_file

#: Chunks share this many locks per dataset (chunk i uses stripe i % N).
CHUNK_LOCK_STRIPES = 256
assert CHUNK_LOCK_STRIPES < DATASET_LOCK_SPAN  # the dataset lock and every stripe fit its block

_local_guard = threading.Lock()
_local_locks: dict[tuple[str, str], threading.Lock] = {}


def _local_lock(key: tuple[str, str]) -> threading.Lock:
    with _local_guard:
        lock = _local_locks.get(key)
        if lock is None:
            lock = _local_locks[key] = threading.Lock()
        return lock


def local_root(store: Any) -> Path | None:
    """The local directory behind ``store``, or None if it has none."""
    root = getattr(store, "root", None)
    if isinstance(root, (str, os.PathLike)):
        return Path(root)
    return None


class DatasetLocks:
    """The dataset lock and the striped chunk locks of one dataset.

    Lock order is always dataset lock, then chunk locks in ascending stripe
    order, so two savers can never wait on each other in a cycle.

    Example:
        >>> import zarr
        >>> locks = DatasetLocks(zarr.storage.MemoryStore(), "a/b")
        >>> with locks.dataset(), locks.chunks([0, 3]):
        ...     pass
    """

    def __init__(self, store: Any, dataset_path: str) -> None:
        root = local_root(store)
        self._file = None if root is None else lock_file(root)
        self._base = dataset_lock_base(dataset_path)
        self._key = f"{type(store).__qualname__}:{store}"
        self._path = dataset_path

    @property
    def between_processes(self) -> bool:
        """True when the locks also exclude other processes (local stores)."""
        return self._file is not None

    def _lock(self, index: int) -> contextlib.AbstractContextManager[Any]:
        """Lock ``index`` of the dataset's block: 0 is the dataset lock, 1 + s chunk stripe s."""
        if self._file is not None:
            return FileLock(self._file, self._base + index)
        return _local_lock((self._key, f"{self._path}/{index}"))

    def dataset(self) -> contextlib.AbstractContextManager[Any]:
        """Held while reserving rows, resizing, creating or replacing the dataset."""
        return self._lock(0)

    @contextlib.contextmanager
    def chunks(self, chunk_ids: Iterable[int]) -> Iterator[None]:
        """Held while read-modify-writing the given chunks."""
        stripes = sorted({int(c) % CHUNK_LOCK_STRIPES for c in chunk_ids})
        with contextlib.ExitStack() as stack:
            for stripe in stripes:
                stack.enter_context(self._lock(1 + stripe))
            yield


__all__ = ["CHUNK_LOCK_STRIPES", "DatasetLocks", "local_root"]
