"""LRUStoreCache: a read-through cache of values and listings in front of any zarr store.

zarr 3 dropped zarr 2's ``LRUStoreCache``; this one keeps its contract: reads are
served from memory when possible, writes go through to the store and update the cache.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.common import concurrent_map

from zsaver._config import to_config, validate_config
from zsaver.errors import StoreConfigError
from zsaver.stores import _sync_io as sync_io
from zsaver.stores._sync_io import ensure_open_sync
from zsaver.stores._zip_pickle import with_zips, without_zips

__all__ = ["LRUStoreCache"]

_ValueKey = tuple[str, ByteRequest | None]


def _with_read_only(store: Store, read_only: bool) -> Store:
    if store.read_only == read_only:
        return store
    try:
        return store.with_read_only(read_only)
    except NotImplementedError:
        if read_only:
            return store  # the cache's own read-only gate refuses writes first
        raise


def _slice_bounds(size: int, byte_range: ByteRequest | None) -> tuple[int, int]:
    """[start, stop) of ``byte_range`` in a value of ``size`` bytes, clamped to it.

    zarr's ``_normalize_byte_range_index`` gives a negative start for a suffix longer
    than the value, which a slice reads from the end; a store answers with the whole value.
    """
    if byte_range is None:
        return 0, size
    if isinstance(byte_range, RangeByteRequest):
        start, stop = byte_range.start, byte_range.end
    elif isinstance(byte_range, OffsetByteRequest):
        start, stop = byte_range.offset, size
    elif isinstance(byte_range, SuffixByteRequest):
        start, stop = size - byte_range.suffix, size
    else:
        raise TypeError(f"Unexpected byte_range, got {byte_range}.")
    start = min(max(0, start), size)
    return start, max(start, min(stop, size))


class _CacheState:
    """What a cache and its read-only/writable views (``with_read_only``) share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: OrderedDict[_ValueKey, Buffer] = OrderedDict()
        self.ranges_of: dict[str, set[_ValueKey]] = {}  # key -> its cached (key, range) entries
        self.listings: dict[tuple[str, str], tuple[str, ...]] = {}
        self.current_size = 0
        # Bumped by every write and invalidation: a read that started before one must not
        # store what it fetched, or a stale value could outlive the write.
        self.generation = 0
        # Writes in flight, per key, and the keys whose write overlapped another write, a
        # delete or an invalidation: what the store kept is then unknown, so it is not cached.
        self.writing: dict[str, int] = {}
        self.contended: set[str] = set()
        self.hits = 0
        self.misses = 0
        _all_states.add(self)


#: Every cache's shared state, so a forked child can start each afresh.
_all_states: weakref.WeakSet[_CacheState] = weakref.WeakSet()


def _reset_after_fork() -> None:
    """In a forked child: new locks and empty caches (another thread may have held the
    lock, or been midway through changing the cache, at the fork)."""
    for state in list(_all_states):
        state.__init__()  # type: ignore[misc]


os.register_at_fork(after_in_child=_reset_after_fork)


class LRUStoreCache(Store):
    """Cache values (and byte ranges of them) and listings of ``store`` in memory.

    - At most ``max_size`` bytes of values are kept; the least recently used go first.
      A value larger than ``max_size`` is passed through uncached. ``max_size=None``
      means unbounded.
    - Listings (``list``, ``list_prefix``, ``list_dir``) are cached until a write.
    - ``set``/``delete`` go through to the store, then update or drop the cached entries.
    - Changes made to the store behind the cache's back are not seen until
      :meth:`invalidate` (or :meth:`invalidate_values` / :meth:`invalidate_keys`).
    - ``hits`` and ``misses`` count value reads served from memory and from the store.

    Pickling drops the cached data (each process builds its own cache).

    Example:
        >>> import zarr
        >>> from zarr.storage import MemoryStore
        >>> cache = LRUStoreCache(MemoryStore(), max_size=2**28)
        >>> z = zarr.create_array(cache, shape=(4,), chunks=(2,), dtype="i4")
        >>> z[:] = 1
        >>> _ = z[:]; _ = z[:]
        >>> cache.hits > 0
        True
    """

    def __init__(self, store: Store, max_size: int | None, *, read_only: bool = False) -> None:
        if not isinstance(store, Store):
            raise StoreConfigError(f"LRUStoreCache needs a zarr Store, got {type(store).__name__}")
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0):
            raise StoreConfigError(f"max_size must be an int >= 0 (bytes) or None, got {max_size!r}")
        super().__init__(read_only=read_only)
        self._store = store
        self._max_size = max_size
        self._init_cache()

    def _init_cache(self) -> None:
        self._c = _CacheState()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "_store": without_zips(self._store),  # zarr's ZipStore would open when unpickled
            "_max_size": self._max_size,
            "_read_only": self._read_only,
            "_is_open": False,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _store=with_zips(state["_store"]))
        self._init_cache()

    # --- description -----------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store behind the cache."""
        return self._store

    @property
    def max_size(self) -> int | None:
        return self._max_size

    @property
    def hits(self) -> int:
        """Value reads answered from memory."""
        return self._c.hits

    @property
    def misses(self) -> int:
        """Value reads that went to the store."""
        return self._c.misses

    @property
    def current_size(self) -> int:
        """Bytes of values held now."""
        return self._c.current_size

    @property
    def read_only(self) -> bool:
        return self._read_only or self._store.read_only

    @property
    def supports_writes(self) -> bool:  # type: ignore[override]
        return self._store.supports_writes

    @property
    def supports_deletes(self) -> bool:  # type: ignore[override]
        return self._store.supports_deletes

    @property
    def supports_listing(self) -> bool:  # type: ignore[override]
        return self._store.supports_listing

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LRUStoreCache)
            and self._store == other._store
            and self._max_size == other._max_size
            and self._read_only == other._read_only
        )

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return f"lru_cache://{self._store}"

    def __repr__(self) -> str:
        return f"LRUStoreCache({self._store!r}, max_size={self._max_size})"

    def to_config(self) -> dict[str, Any]:
        """``{"type": "lru_cache", "store": {...}, "max_size": ..., "read_only": ...}``."""
        return validate_config(
            {
                "type": "lru_cache",
                "store": to_config(self._store),
                "max_size": self._max_size,
                "read_only": self._read_only,
            }
        )

    def with_read_only(self, read_only: bool = False) -> LRUStoreCache:
        """A new, unopened view in the given mode that shares this cache's contents and counters.

        zarr calls this for ``mode="r"``; sharing keeps one cache per store, not per view.
        """
        view = LRUStoreCache(_with_read_only(self._store, read_only), self._max_size, read_only=read_only)
        view._c = self._c
        return view

    # --- lifecycle -------------------------------------------------------------------

    async def _open(self) -> None:
        # The wrapped store first: once the cache says it is open, other threads call
        # the wrapped store directly. Several threads may open at once (the first use
        # of a shared cache): an "already open" from the wrapped store is then no error.
        if self._is_open:
            raise ValueError("store is already open")
        if not self._store._is_open:
            try:
                await self._store._open()
            except ValueError:
                if not self._store._is_open:
                    raise
        self._is_open = True

    def close(self) -> None:
        if self._store._is_open:
            self._store.close()
        super().close()

    # --- invalidation ------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget every cached value and listing."""
        self.invalidate_values()
        self.invalidate_keys()

    def invalidate_values(self) -> None:
        """Forget every cached value (listings stay)."""
        with self._c.lock:
            self._c.generation += 1
            self._c.values.clear()
            self._c.ranges_of.clear()
            self._c.current_size = 0
            self._c.contended.update(self._c.writing)  # writes in flight: outcome unknown

    def invalidate_keys(self) -> None:
        """Forget every cached listing (values stay)."""
        with self._c.lock:
            self._c.generation += 1
            self._c.listings.clear()

    def _forget_key(self, key: str) -> None:
        """Drop ``key``'s cached values; a write of it in flight will not cache its value."""
        with self._c.lock:
            self._forget_key_locked(key)
            if key in self._c.writing:
                self._c.contended.add(key)

    def _forget_key_locked(self, key: str) -> None:
        self._c.generation += 1
        for entry in self._c.ranges_of.pop(key, ()):
            self._c.current_size -= len(self._c.values.pop(entry))

    def _forget_prefix(self, prefix: str) -> None:
        with self._c.lock:
            self._c.generation += 1
            for key in [k for k in self._c.ranges_of if k.startswith(prefix)]:
                for entry in self._c.ranges_of.pop(key):
                    self._c.current_size -= len(self._c.values.pop(entry))
            self._c.contended.update(k for k in self._c.writing if k.startswith(prefix))

    def _remember(self, entry: _ValueKey, value: Buffer, generation: int | None = None) -> None:
        with self._c.lock:
            if generation is None or generation == self._c.generation:
                self._remember_locked(entry, value)

    def _remember_locked(self, entry: _ValueKey, value: Buffer) -> None:
        size = len(value)
        if self._max_size is not None and size > self._max_size:
            return
        old = self._c.values.pop(entry, None)
        if old is not None:
            self._c.current_size -= len(old)
        self._c.values[entry] = value
        self._c.ranges_of.setdefault(entry[0], set()).add(entry)
        self._c.current_size += size
        while self._max_size is not None and self._c.current_size > self._max_size:
            (key, byte_range), evicted = self._c.values.popitem(last=False)
            self._c.current_size -= len(evicted)
            entries = self._c.ranges_of[key]
            entries.discard((key, byte_range))
            if not entries:
                del self._c.ranges_of[key]

    def _lookup(self, key: str, byte_range: ByteRequest | None) -> Buffer | None:
        """A cached answer for (key, byte_range): the exact entry, or a slice of the whole value."""
        with self._c.lock:
            value = self._c.values.get((key, byte_range))
            if value is not None:
                self._c.values.move_to_end((key, byte_range))
                return value
            whole = self._c.values.get((key, None))
            if whole is None:
                return None
            self._c.values.move_to_end((key, None))
        start, stop = _slice_bounds(len(whole), byte_range)
        return whole[start:stop]

    # --- reads ------------------------------------------------------------------------

    def _cached(self, key: str, byte_range: ByteRequest | None, prototype: BufferPrototype) -> Buffer | None:
        """The cached value (counted as a hit), or None (counted as a miss)."""
        cached = self._lookup(key, byte_range)
        if cached is None:
            self._c.misses += 1
            return None
        self._c.hits += 1
        return prototype.buffer.from_buffer(cached)

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        cached = self._cached(key, byte_range, prototype)
        if cached is not None:
            return cached
        await self._ensure_open()
        generation = self._c.generation
        value = await self._store.get(key, prototype, byte_range)
        if value is not None:
            self._remember((key, byte_range), value, generation)
        return value

    def get_sync(
        self, key: str, *, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """``get`` without the event loop (zarr's optional synchronous protocol)."""
        prototype = prototype or default_buffer_prototype()
        cached = self._cached(key, byte_range, prototype)
        if cached is not None:
            return cached
        ensure_open_sync(self)
        generation = self._c.generation
        value = sync_io.get_sync(self._store, key, prototype, byte_range)
        if value is not None:
            self._remember((key, byte_range), value, generation)
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        async def one(key: str, byte_range: ByteRequest | None) -> Buffer | None:
            return await self.get(key, prototype, byte_range)

        return await concurrent_map(list(key_ranges), one, limit=None)

    async def exists(self, key: str) -> bool:
        with self._c.lock:
            if key in self._c.ranges_of:
                return True
        await self._ensure_open()
        return await self._store.exists(key)

    async def getsize(self, key: str) -> int:
        with self._c.lock:
            whole = self._c.values.get((key, None))
        if whole is not None:
            return len(whole)
        await self._ensure_open()
        return await self._store.getsize(key)

    # --- writes -----------------------------------------------------------------------

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await self._ensure_open()
        with self._tracked_write(key, value):
            await self._store.set(key, value)

    def set_sync(self, key: str, value: Buffer) -> None:
        self._check_writable()
        ensure_open_sync(self)
        with self._tracked_write(key, value):
            sync_io.set_sync(self._store, key, value)

    @contextlib.contextmanager
    def _tracked_write(self, key: str, value: Buffer) -> Iterator[None]:
        """Around the store's write of ``value``: see :meth:`_end_write`."""
        self._begin_write(key)
        written: Buffer | None = None
        try:
            yield
            written = value
        finally:
            self._end_write(key, written)

    def _begin_write(self, key: str) -> None:
        with self._c.lock:
            self._forget_key_locked(key)
            in_flight = self._c.writing.get(key, 0)
            self._c.writing[key] = in_flight + 1
            if in_flight:
                self._c.contended.add(key)

    def _end_write(self, key: str, value: Buffer | None) -> None:
        """Cache the value written (None: the write failed), unless another write overlapped it.

        Whatever a read cached while the write was in flight is dropped, and reads
        still in flight will not cache what they fetched (the generation moves on).
        """
        with self._c.lock:
            self._forget_key_locked(key)
            in_flight = self._c.writing.pop(key) - 1
            contended = key in self._c.contended
            if in_flight:
                self._c.writing[key] = in_flight
            else:
                self._c.contended.discard(key)
            if value is not None and not contended:
                self._remember_locked((key, None), value)
        self.invalidate_keys()

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await self._ensure_open()
        self._forget_key(key)
        await self._store.set_if_not_exists(key, value)
        self._forget_key(key)  # we do not know which value won
        self.invalidate_keys()

    async def delete(self, key: str) -> None:
        self._check_writable()
        await self._ensure_open()
        self._forget_key(key)  # before and after: a write of the key in flight caches nothing
        await self._store.delete(key)
        self._forget_key(key)
        self.invalidate_keys()

    def delete_sync(self, key: str) -> None:
        self._check_writable()
        ensure_open_sync(self)
        self._forget_key(key)
        sync_io.delete_sync(self._store, key)
        self._forget_key(key)
        self.invalidate_keys()

    async def delete_dir(self, prefix: str) -> None:
        self._check_writable()
        await self._ensure_open()
        under = prefix.strip("/") + "/" if prefix.strip("/") else ""  # forget too much, never too little
        self._forget_prefix(under)
        await self._store.delete_dir(prefix)
        self._forget_prefix(under)
        self.invalidate_keys()

    async def clear(self) -> None:
        self._check_writable()
        await self._ensure_open()
        self.invalidate()
        await self._store.clear()
        self.invalidate()

    # --- listing ----------------------------------------------------------------------

    async def _listing(
        self, kind: str, prefix: str, source: Callable[[], AsyncIterator[str]]
    ) -> tuple[str, ...]:
        with self._c.lock:
            cached = self._c.listings.get((kind, prefix))
            generation = self._c.generation
        if cached is not None:
            return cached
        await self._ensure_open()
        keys = tuple([key async for key in source()])
        with self._c.lock:
            if generation == self._c.generation:
                self._c.listings[(kind, prefix)] = keys
        return keys

    async def is_empty(self, prefix: str) -> bool:
        # Not cached: zarr asks this before creating a node, and it must be current.
        await self._ensure_open()
        return await self._store.is_empty(prefix)

    async def list(self) -> AsyncIterator[str]:
        for key in await self._listing("list", "", self._store.list):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in await self._listing("prefix", prefix, lambda: self._store.list_prefix(prefix)):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        for key in await self._listing("dir", prefix, lambda: self._store.list_dir(prefix)):
            yield key
