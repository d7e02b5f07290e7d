"""LRUStoreCache: zarr's StoreTests (the synchronous protocol included), eviction by
bytes, invalidation and the listing cache."""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, cpu, default_buffer_prototype
from zarr.core.sync import _collect_aiterator, sync
from zarr.storage import LocalStore, MemoryStore, WrapperStore
from zarr.testing.store import LatencyStore, StoreTests

from zsaver.errors import StoreConfigError
from zsaver.stores import LRUStoreCache

PROTO = default_buffer_prototype()


def buf(data: bytes) -> Buffer:
    return cpu.Buffer.from_bytes(data)


class TestLRUStoreCache(StoreTests[LRUStoreCache, cpu.Buffer]):
    store_cls = LRUStoreCache
    buffer_cls = cpu.Buffer

    async def set(self, store: LRUStoreCache, key: str, value: Buffer) -> None:
        store.store._store_dict[key] = value  # type: ignore[attr-defined]

    async def get(self, store: LRUStoreCache, key: str) -> Buffer:
        return store.store._store_dict[key]  # type: ignore[attr-defined]

    @pytest.fixture(params=[None, 2**16])
    def store_kwargs(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        return {"store": MemoryStore(), "max_size": request.param}

    def test_store_repr(self, store: LRUStoreCache) -> None:
        assert repr(store).startswith("LRUStoreCache(MemoryStore(")

    def test_store_supports_writes(self, store: LRUStoreCache) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: LRUStoreCache) -> None:
        assert store.supports_listing


class CountingStore(WrapperStore[MemoryStore]):
    """Counts the reads and listings that reach the wrapped store."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.gets = 0
        self.lists = 0

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Buffer | None:
        self.gets += 1
        return await self._store.get(key, prototype, byte_range)

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        self.lists += 1
        async for key in self._store.list_prefix(prefix):
            yield key

    async def list(self) -> AsyncIterator[str]:
        self.lists += 1
        async for key in self._store.list():
            yield key


def _cache(max_size: int | None = 100) -> tuple[LRUStoreCache, CountingStore]:
    inner = CountingStore(MemoryStore())
    return LRUStoreCache(inner, max_size), inner


def _get(cache: LRUStoreCache, key: str, byte_range: Any = None) -> bytes | None:
    value = sync(cache.get(key, PROTO, byte_range))
    return None if value is None else value.to_bytes()


def test_second_read_is_served_from_memory() -> None:
    cache, inner = _cache()
    sync(inner.set("a", buf(b"x" * 10)))
    assert _get(cache, "a") == _get(cache, "a") == b"x" * 10
    assert (inner.gets, cache.hits, cache.misses) == (1, 1, 1)


def test_least_recently_used_values_are_evicted_when_bytes_exceed_max_size() -> None:
    cache, inner = _cache(max_size=100)
    for key in "abc":
        sync(inner.set(key, buf(key.encode() * 40)))
    _get(cache, "a")
    _get(cache, "b")
    _get(cache, "a")  # a is now more recent than b
    _get(cache, "c")  # 120 bytes > 100: b goes
    assert cache.current_size == 80
    gets = inner.gets
    _get(cache, "a")
    _get(cache, "c")
    assert inner.gets == gets  # both still cached
    _get(cache, "b")
    assert inner.gets == gets + 1


def test_value_larger_than_max_size_is_passed_through_uncached() -> None:
    cache, inner = _cache(max_size=10)
    sync(inner.set("big", buf(b"z" * 11)))
    assert _get(cache, "big") == _get(cache, "big") == b"z" * 11
    assert inner.gets == 2 and cache.current_size == 0


def test_byte_ranges_are_cached_and_served_from_a_cached_whole_value() -> None:
    cache, inner = _cache(max_size=None)
    sync(inner.set("k", buf(b"0123456789")))
    assert _get(cache, "k", SuffixByteRequest(3)) == b"789"
    assert _get(cache, "k", SuffixByteRequest(3)) == b"789"
    assert inner.gets == 1
    assert _get(cache, "k") == b"0123456789"
    assert _get(cache, "k", RangeByteRequest(2, 5)) == b"234"  # sliced from the whole value
    assert inner.gets == 2


def test_writes_go_through_and_update_the_cache() -> None:
    cache, inner = _cache()
    sync(cache.set("k", buf(b"old")))
    assert sync(inner.get("k", PROTO)).to_bytes() == b"old"
    sync(cache.set("k", buf(b"new")))
    assert _get(cache, "k") == b"new" and cache.hits == 1
    sync(cache.delete("k"))
    assert _get(cache, "k") is None and sync(inner.get("k", PROTO)) is None


def test_changes_behind_the_cache_show_after_invalidate_values() -> None:
    cache, inner = _cache()
    sync(inner.set("k", buf(b"v1")))
    _get(cache, "k")
    sync(inner.set("k", buf(b"v2")))
    assert _get(cache, "k") == b"v1"  # documented: the cache does not see changes made behind it
    cache.invalidate_values()
    assert _get(cache, "k") == b"v2" and cache.current_size == 2


def test_listings_are_cached_until_a_write_or_invalidate_keys() -> None:
    cache, inner = _cache()
    sync(inner.set("g/a", buf(b"1")))
    listed = sync(_collect_aiterator(cache.list_prefix("g/")))
    assert sync(_collect_aiterator(cache.list_prefix("g/"))) == listed == ("g/a",)
    assert inner.lists == 1
    sync(inner.set("g/b", buf(b"2")))  # behind the cache's back: not seen yet
    assert sync(_collect_aiterator(cache.list_prefix("g/"))) == ("g/a",)
    cache.invalidate_keys()
    assert sorted(sync(_collect_aiterator(cache.list_prefix("g/")))) == ["g/a", "g/b"]
    sync(cache.set("g/c", buf(b"3")))  # a write through the cache drops listings itself
    assert sorted(sync(_collect_aiterator(cache.list_prefix("g/")))) == ["g/a", "g/b", "g/c"]
    assert inner.lists == 3


def test_invalidate_forgets_values_and_listings() -> None:
    cache, inner = _cache()
    sync(inner.set("k", buf(b"v")))
    _get(cache, "k")
    sync(_collect_aiterator(cache.list()))
    cache.invalidate()
    _get(cache, "k")
    sync(_collect_aiterator(cache.list()))
    assert (inner.gets, inner.lists) == (2, 2)


def test_delete_dir_drops_cached_values_below_the_prefix_only() -> None:
    cache, _ = _cache(max_size=None)
    for key in ("a/1", "a/2", "ab/1"):
        sync(cache.set(key, buf(b"v")))
    sync(cache.delete_dir("a"))
    assert _get(cache, "a/1") is None and _get(cache, "ab/1") == b"v"


def test_pickled_cache_is_equal_and_starts_empty(tmp_path: Any) -> None:
    cache = LRUStoreCache(LocalStore(tmp_path), 1000)
    sync(cache.set("k", buf(b"v")))
    _get(cache, "k")
    clone = pickle.loads(pickle.dumps(cache))
    assert clone == cache and clone.current_size == 0 and clone.hits == 0
    assert _get(clone, "k") == b"v"


def test_zarr_array_reads_hit_the_cache_in_front_of_a_slow_store() -> None:
    slow = LatencyStore(MemoryStore(), get_latency=0.001)
    cache = LRUStoreCache(slow, 2**20)
    arr = zarr.create_array(cache, name="x", shape=(100,), chunks=(10,), dtype="f8")
    arr[:] = np.arange(100.0)
    cache.invalidate()
    reader = zarr.open_array(cache, path="x", mode="r")
    first_misses = cache.misses
    np.testing.assert_array_equal(reader[:], np.arange(100.0))
    np.testing.assert_array_equal(reader[:], np.arange(100.0))
    assert cache.misses - first_misses == 10 and cache.hits >= 10


@pytest.mark.parametrize("max_size", [-1, 1.5, True])
def test_bad_max_size_is_refused(max_size: Any) -> None:
    with pytest.raises(StoreConfigError, match="max_size must be an int >= 0"):
        LRUStoreCache(MemoryStore(), max_size)


def test_sync_methods_use_the_cache_and_the_wrapped_stores_async_api() -> None:
    """A store without zarr's synchronous methods is reached through zarr's loop."""

    class AsyncOnly(CountingStore):
        get_sync = set_sync = delete_sync = None  # newer zarr's WrapperStore has them

    inner = AsyncOnly(MemoryStore())
    cache = LRUStoreCache(inner, 100)
    sync(inner.set("a", buf(b"abc")))
    assert cache.get_sync("a").to_bytes() == b"abc"
    assert cache.get_sync("a").to_bytes() == b"abc"
    assert (inner.gets, cache.hits, cache.misses) == (1, 1, 1)
    cache.set_sync("b", buf(b"new"))
    assert cache.get_sync("b").to_bytes() == b"new" and inner.gets == 1  # remembered on write
    assert sync(inner.get("b", PROTO)).to_bytes() == b"new"  # and written through
    cache.delete_sync("b")
    assert cache.get_sync("b") is None and sync(inner.get("b", PROTO)) is None
    with pytest.raises(ValueError):
        cache.with_read_only(True).set_sync("c", buf(b"x"))


def test_a_fresh_cache_opens_a_zip_store_before_reading_or_listing(tmp_path) -> None:
    from zarr.storage import ZipStore

    with ZipStore(tmp_path / "a.zip", mode="w") as zip_store:
        zarr.create_array(zip_store, name="z", shape=(4,), chunks=(2,), dtype="i4")[:] = 5
    assert sync(LRUStoreCache(ZipStore(tmp_path / "a.zip", mode="r"), max_size=None).exists("z/zarr.json"))
    keys = sync(_collect_aiterator(LRUStoreCache(ZipStore(tmp_path / "a.zip", mode="r"), max_size=None).list()))
    assert sorted(keys) == ["z/c/0", "z/c/1", "z/zarr.json", "zarr.json"]  # zarr writes a root group too


def test_two_overlapping_writes_of_one_key_leave_the_cache_serving_what_the_store_holds() -> None:
    import asyncio

    class AcknowledgesALate(MemoryStore):
        async def set(self, key: str, value: Buffer, byte_range: Any = None) -> None:
            await super().set(key, value)
            if value.to_bytes() == b"A":
                await asyncio.sleep(0.2)  # A lands first but returns after B

    async def scenario() -> tuple[bytes, bytes]:
        inner = AcknowledgesALate()
        cache = LRUStoreCache(inner, max_size=None)

        async def write(value: bytes, delay: float) -> None:
            await asyncio.sleep(delay)
            await cache.set("k", default_buffer_prototype().buffer.from_bytes(value))

        await asyncio.gather(write(b"A", 0.0), write(b"B", 0.05))
        stored = await inner.get("k", default_buffer_prototype())
        served = await cache.get("k", default_buffer_prototype())
        assert stored is not None and served is not None
        return stored.to_bytes(), served.to_bytes()

    stored, served = asyncio.run(scenario())
    assert stored == served == b"B"


class _GatedStore(MemoryStore):
    """Writes of ``gated_key`` wait for ``gate``."""

    gate: Any = None
    gated_key: str | None = None

    async def set(self, key: str, value: Buffer, byte_range: Any = None) -> None:
        if key == self.gated_key:
            await self.gate.wait()
        await super().set(key, value)


@pytest.mark.parametrize("byte_range", [None, RangeByteRequest(0, 3)])
def test_a_read_during_a_write_leaves_no_stale_value_behind(byte_range) -> None:
    import asyncio

    proto = default_buffer_prototype()

    async def scenario() -> tuple[bytes, bytes]:
        inner = _GatedStore()
        await inner.set("A", proto.buffer.from_bytes(b"old-old-old"))
        cache = LRUStoreCache(inner, max_size=None)
        inner.gate, inner.gated_key = asyncio.Event(), "A"
        write = asyncio.create_task(cache.set("A", proto.buffer.from_bytes(b"NEW-NEW-NEW")))
        await asyncio.sleep(0.01)  # the write waits inside the store
        await cache.get("A", proto, byte_range)  # reads (and caches) the old value
        await cache.set("B", proto.buffer.from_bytes(b"x"))  # another write meanwhile
        inner.gate.set()
        await write
        served = await cache.get("A", proto, byte_range)
        stored = await inner.get("A", proto, byte_range)
        assert served is not None and stored is not None
        return served.to_bytes(), stored.to_bytes()

    served, stored = asyncio.run(scenario())
    assert served == stored


def test_values_written_by_zarr_are_cached(tmp_path) -> None:
    # zarr writes chunks concurrently: writes of different keys must not keep each other out.
    cache = LRUStoreCache(LocalStore(tmp_path), max_size=None)
    arr = zarr.create_array(cache, name="x", shape=(32,), chunks=(1,), dtype="i4")
    arr[:] = np.arange(1, 33)  # no chunk equals the fill value (zarr would not store it)
    hits, misses = cache.hits, cache.misses
    np.testing.assert_array_equal(arr[:], np.arange(1, 33))
    assert (cache.hits - hits, cache.misses - misses) == (32, 0)


@pytest.mark.parametrize("kind", ["delete", "delete_dir", "clear"])
def test_a_delete_while_a_write_is_returning_leaves_nothing_cached(kind: str) -> None:
    import asyncio

    proto = default_buffer_prototype()

    class ReturnsLate(MemoryStore):
        gate: Any = None

        async def set(self, key: str, value: Buffer, byte_range: Any = None) -> None:
            await super().set(key, value)  # the store holds the value, the call has not returned
            if self.gate is not None:
                await self.gate.wait()

    async def scenario() -> tuple[Any, Any]:
        inner = ReturnsLate()
        cache = LRUStoreCache(inner, max_size=None)
        gate = inner.gate = asyncio.Event()
        write = asyncio.create_task(cache.set("a/k", proto.buffer.from_bytes(b"v")))
        await asyncio.sleep(0.01)
        inner.gate = None
        if kind == "delete":
            await cache.delete("a/k")
        elif kind == "delete_dir":
            await cache.delete_dir("a")
        else:
            await cache.clear()
        gate.set()
        await write
        return await cache.get("a/k", proto), await inner.get("a/k", proto)

    served, stored = asyncio.run(scenario())
    assert served is None and stored is None


@pytest.mark.parametrize("prefix", ["g", "g/", "/g", "/g/"])
def test_delete_dir_forgets_the_keys_below_the_prefix_however_it_is_written(prefix: str) -> None:
    class StripsSlashes(MemoryStore):  # as zsaver's ShardedStore does
        async def delete_dir(self, prefix: str) -> None:
            await super().delete_dir(prefix.strip("/"))

    cache = LRUStoreCache(StripsSlashes(), max_size=None)
    sync(cache.set("g/k", default_buffer_prototype().buffer.from_bytes(b"v")))
    assert _get(cache, "g/k") == b"v"
    sync(cache.delete_dir(prefix))
    assert sync(cache.get("g/k", default_buffer_prototype())) is None


def test_the_first_use_from_several_threads_at_once_opens_the_cache_once(tmp_path) -> None:
    errors: list[str] = []
    for trial in range(30):
        cache = LRUStoreCache(LocalStore(tmp_path / str(trial)), max_size=None)
        barrier = threading.Barrier(8)

        def first_use(i: int, cache: LRUStoreCache = cache, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                if i % 2:
                    cache.get_sync(f"a/{i}")
                else:
                    cache.set_sync(f"a/{i}", default_buffer_prototype().buffer.from_bytes(b"v"))
            except Exception as exc:  # "store is already open" from the wrapped store
                errors.append(repr(exc))

        threads = [threading.Thread(target=first_use, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_inherit_a_held_cache_lock() -> None:
    cache = LRUStoreCache(MemoryStore(), max_size=10_000)
    cache.set_sync("k", default_buffer_prototype().buffer.from_bytes(b"v"))
    with cache._c.lock:  # another thread is midway through a cache operation at the fork
        pid = os.fork()
        if pid == 0:  # the child: must read, not wait forever for the parent thread's lock
            signal.alarm(10)
            os._exit(0 if cache.get_sync("k").to_bytes() == b"v" else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child ended with status {status}"
