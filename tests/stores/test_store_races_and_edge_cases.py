"""Regressions: convert's refusals, listing and getsize during consolidation by another
process, byte ranges through LRUStoreCache, write_direct flush of a nested layout."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import LocalStore

from zsaver.errors import StoreConfigError
from zsaver.stores import H5ShardStore, LRUStoreCache, ZipShardStore, convert, open_store

JOURNAL = ".zsaver-convert.json"


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sharded(store_cls: type, root: Path, cps: int = 8) -> np.ndarray:
    store = store_cls(root, chunks_per_shard=(cps,))
    data = np.arange(40, dtype="i4")
    zarr.create_array(store, name="a", shape=(40,), chunks=(2,), dtype="i4")[:] = data
    store.consolidate()
    store.close()
    return data


# ---------------------------------------------------------------- convert (bug 1)
def test_convert_to_plain_ignores_chunks_per_shard(store_cls: type, tmp_path: Path) -> None:
    data = _sharded(store_cls, tmp_path, cps=8)
    convert(tmp_path, "plain", chunks_per_shard=(4,))  # plain has no shards: nothing to regroup
    assert not (tmp_path / JOURNAL).exists()
    store = open_store(tmp_path)
    assert isinstance(store, LocalStore)
    np.testing.assert_array_equal(zarr.open_array(store, path="a")[:], data)
    convert(tmp_path, "zip", chunks_per_shard=(4,))  # ...and back, regrouped
    np.testing.assert_array_equal(zarr.open_array(open_store(tmp_path), path="a")[:], data)
    assert len(list((tmp_path / "a").glob("*.zip"))) == 5


@pytest.mark.parametrize("to", ["h5", "zip"])
def test_convert_refusing_another_chunks_per_shard_writes_nothing(
    store_cls: type, tmp_path: Path, to: str
) -> None:
    data = _sharded(store_cls, tmp_path, cps=8)
    before = _snapshot(tmp_path)
    with pytest.raises(StoreConfigError, match="chunks_per_shard"):
        convert(tmp_path, to, chunks_per_shard=(4,))
    assert _snapshot(tmp_path) == before  # no journal: the store still opens
    np.testing.assert_array_equal(zarr.open_array(open_store(tmp_path), path="a")[:], data)
    with pytest.raises(StoreConfigError):
        convert(tmp_path, "plain", chunks_per_shard=0)  # still validated, even for plain
    assert _snapshot(tmp_path) == before


def test_convert_refuses_a_marker_naming_an_unknown_container_before_writing(tmp_path: Path) -> None:
    _sharded(ZipShardStore, tmp_path)
    marker = tmp_path / ".zsaver-store.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "container": "tar"}))
    before = _snapshot(tmp_path)
    with pytest.raises(StoreConfigError, match="unknown container 'tar'"):
        convert(tmp_path, "plain")
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------- concurrent consolidation
def _start(script: str, root: Path, ctl: Path, store_cls: type) -> subprocess.Popen[bytes]:
    """Run ``script`` in another process: ``root`` is the store, ``ctl`` holds control files."""
    code = f"from zsaver.stores import {store_cls.__name__} as cls\n" + textwrap.dedent(script)
    with open(ctl / "writer.err", "wb") as err:
        return subprocess.Popen([sys.executable, "-c", code, str(root), str(ctl)],
                                env=os.environ.copy(), stderr=err)


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, (path.parent / "writer.err").read_text()
        assert time.monotonic() < deadline, "the writer process did not start"
        time.sleep(0.01)


def _stop(proc: subprocess.Popen[bytes], ctl: Path) -> None:
    (ctl / "stop").touch()
    proc.wait(timeout=60)
    assert proc.returncode == 0, (ctl / "writer.err").read_text()


_GROWING_WRITER = """
import os, sys, zarr
from pathlib import Path
root, ctl = Path(sys.argv[1]), Path(sys.argv[2])
store = cls(root)
arr = zarr.open_array(store, path="a", mode="r+")
for i in range(arr.shape[0]):
    if (ctl / "stop").exists():
        break
    arr[i] = i                                   # chunk i now exists (a loose file)
    (ctl / "progress.tmp").write_text(str(i + 1))
    os.replace(ctl / "progress.tmp", ctl / "progress")
    store.consolidate(workers=1)                 # ...and moves into the shard
"""


async def _listed(store: object, how: str) -> set[str]:
    if how == "list_prefix":
        return {k async for k in store.list_prefix("a/")}  # type: ignore[attr-defined]
    if how == "list":
        return {k async for k in store.list()}  # type: ignore[attr-defined]
    return {f"a/c/{head}/0" async for head in store.list_dir("a/c")}  # type: ignore[attr-defined]


def test_listing_never_misses_a_chunk_while_another_process_consolidates(
    store_cls: type, tmp_path: Path
) -> None:
    # Consolidation renames a shard holding chunk i in, then removes chunk i's loose
    # file; a listing that read the old shard index before walking c/ missed it.
    n_chunks = 5000
    root = tmp_path / "store"
    # Small shards: a shard index is read quicker than the writer rewrites the shard.
    zarr.create_array(store_cls(root, chunks_per_shard=(200,)), name="a",
                      shape=(n_chunks, 2), chunks=(1, 2), dtype="i8", fill_value=-1)
    writer = _start(_GROWING_WRITER, root, tmp_path, store_cls)
    try:
        _wait_for(tmp_path / "progress", writer)
        reader = store_cls(root)
        # Reading a shard index is slowed down, so that consolidations land within
        # every listing: the listing must be right whatever the timing.
        acquire = reader._cache.acquire

        def slow_acquire(path: str) -> object:
            handle = acquire(path)
            time.sleep(0.005)
            return handle

        reader._cache.acquire = slow_acquire  # type: ignore[method-assign]
        misses: list[tuple[str, int, list[str]]] = []
        rounds = 0
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and writer.poll() is None:
            n = int((tmp_path / "progress").read_text())  # chunks 0..n-1 exist from here on
            how = ("list_prefix", "list", "list_dir", "count_chunks")[rounds % 4]
            rounds += 1
            if how == "count_chunks":
                counts = reader.count_chunks("a/")
                if counts["loose"] + counts["in_shards"] < n:
                    misses.append((how, n, [str(counts)]))
                continue
            listed = asyncio.run(_listed(reader, how))
            missing = [k for k in (f"a/c/{i}/0" for i in range(n)) if k not in listed]
            if missing:
                misses.append((how, n, missing))
    finally:
        _stop(writer, tmp_path)
    assert rounds > 20
    assert misses == [], (rounds, misses[:3])


_REWRITING_WRITER = """
import sys, zarr
from pathlib import Path
root, ctl = Path(sys.argv[1]), Path(sys.argv[2])
store = cls(root)
arr = zarr.open_array(store, path="a", mode="r+")
value = 1
while not (ctl / "stop").exists():
    value += 1
    arr[:] = value                     # every chunk is always there: loose or in its shard
    store.consolidate(workers=1)
    (ctl / "started").touch()
"""


def _then_sleep(func: Callable[[str], bool]) -> Callable[[str], bool]:
    def slow(path: str) -> bool:
        result = func(path)
        time.sleep(0.0005)
        return result

    return slow


def test_getsize_exists_and_get_hold_while_another_process_consolidates(
    store_cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    zarr.create_array(store_cls(root, chunks_per_shard=(100,)), name="a", shape=(4,),
                      chunks=(1,), dtype="i8", fill_value=-1)[:] = 1
    writer = _start(_REWRITING_WRITER, root, tmp_path, store_cls)
    failures: list[str] = []
    try:
        _wait_for(tmp_path / "started", writer)
        reader = store_cls(root)
        # Existence checks are slowed down, so that consolidations land between a
        # check and what follows it: the answers must be right whatever the timing.
        for name in ("isfile", "exists"):
            real = getattr(os.path, name)
            monkeypatch.setattr(os.path, name, _then_sleep(real))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and writer.poll() is None:
            for key in ("a/c/0", "a/c/1", "a/c/2", "a/c/3"):
                try:
                    reader.getsize_sync(key)
                except FileNotFoundError as exc:
                    failures.append(f"getsize {key}: {exc!r}")
                if not reader.exists_sync(key):
                    failures.append(f"exists {key}")
                if reader.get_sync(key) is None:
                    failures.append(f"get {key}")
    finally:
        monkeypatch.undo()
        _stop(writer, tmp_path)
    assert failures == []


# ---------------------------------------------------------------- LRUStoreCache byte ranges
_REQUESTS: list[ByteRequest | None] = [
    None,
    RangeByteRequest(0, 4), RangeByteRequest(3, 10), RangeByteRequest(8, 20),
    RangeByteRequest(12, 15), RangeByteRequest(0, 0),
    OffsetByteRequest(0), OffsetByteRequest(4), OffsetByteRequest(10), OffsetByteRequest(14),
    SuffixByteRequest(0), SuffixByteRequest(4), SuffixByteRequest(10), SuffixByteRequest(14),
]


@pytest.mark.parametrize("inner_kind", ["local", "h5", "zip"])
@pytest.mark.parametrize("value", [b"0123456789", b""], ids=["ten-bytes", "empty"])
def test_lru_cache_byte_ranges_match_a_local_store(tmp_path: Path, inner_kind: str, value: bytes) -> None:
    proto = default_buffer_prototype()
    reference = LocalStore(tmp_path / "reference")
    reference.set_sync("k", proto.buffer.from_bytes(value))  # type: ignore[attr-defined]
    expected = {
        repr(r): asyncio.run(reference.get("k", proto, r)).to_bytes() for r in _REQUESTS  # type: ignore[union-attr]
    }

    def make_inner(name: str) -> object:
        if inner_kind == "local":
            return LocalStore(tmp_path / name)
        return (H5ShardStore if inner_kind == "h5" else ZipShardStore)(tmp_path / name)

    # Uncached: the value is written behind the cache's back; each range is read
    # from the store, then (the same range again) from the cache.
    inner = make_inner("uncached")
    inner.set_sync("k", proto.buffer.from_bytes(value))  # type: ignore[attr-defined]
    cache = LRUStoreCache(inner, max_size=2**20)  # type: ignore[arg-type]
    for r in _REQUESTS:
        got = [asyncio.run(cache.get("k", proto, r)), cache.get_sync("k", byte_range=r)]
        assert [g.to_bytes() for g in got if g is not None] == [expected[repr(r)]] * 2, r

    # Cached: set through the cache keeps the whole value, and ranges are cut from it.
    for how in ("async", "sync"):
        cache = LRUStoreCache(make_inner(f"cached-{how}"), max_size=2**20)  # type: ignore[arg-type]
        cache.set_sync("k", proto.buffer.from_bytes(value))
        for r in _REQUESTS:
            hits = cache.hits
            got = (asyncio.run(cache.get("k", proto, r)) if how == "async"
                   else cache.get_sync("k", byte_range=r))
            assert got is not None and got.to_bytes() == expected[repr(r)], (how, r)
            assert cache.hits == hits + 1  # served from memory


# ---------------------------------------------------------------- nested write_direct (bug 4)
@pytest.mark.parametrize(("depth", "shape"), [(2, (4, 4, 4)), (3, (4, 4, 4, 2)), (2, (6, 2))])
def test_write_direct_flush_creates_the_directories_of_nested_files(
    tmp_path: Path, depth: int, shape: tuple[int, ...]
) -> None:
    store = H5ShardStore(tmp_path, layout="nested", consolidate_depth=depth, write_direct=True)
    group = zarr.open_group(store, mode="w", zarr_format=2)
    arr = group.create_array("x", shape=shape, chunks=(2,) * len(shape), dtype="i4",
                             chunk_key_encoding={"name": "v2", "separator": "/"})
    data = np.arange(int(np.prod(shape)), dtype="i4").reshape(shape)
    arr[:] = data
    store.flush()
    store.close()
    assert not list(tmp_path.rglob("*.zsaver-partial"))
    reopened = H5ShardStore(tmp_path)
    np.testing.assert_array_equal(zarr.open_array(reopened, path="x", mode="r")[:], data)
    assert reopened.count_chunks("x/")["loose"] == 0


class _ReplacedWhileOpened:
    """A container whose shard is replaced (a fresh copy renamed over it) during each of
    the first ``times`` index reads, as a consolidation loop in another process does."""

    def __init__(self, container: object, times: int) -> None:
        self._container, self.left = container, times
        self._lock = threading.Lock()

    def read_index(self, path: str) -> object:
        with self._lock:  # zarr reads chunks from several threads
            replace, self.left = self.left > 0, max(0, self.left - 1)
        if replace:
            copy = f"{path}.{threading.get_ident()}.copy"
            with open(path, "rb") as src, open(copy, "wb") as dst:
                dst.write(src.read())
            os.replace(copy, path)
        return self._container.read_index(path)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._container, name)


def test_a_reader_gets_through_a_shard_replaced_many_times_while_it_opens_it(
    store_cls: type, tmp_path: Path
) -> None:
    # After 10 such replacements the read failed: "keeps changing while being opened".
    store = store_cls(tmp_path, chunks_per_shard=(4,))
    zarr.create_array(store, name="a", shape=(8,), chunks=(2,), dtype="i4")[:] = np.arange(8)
    store.consolidate()
    reader = store_cls(tmp_path)
    churn = _ReplacedWhileOpened(reader._cache.container, times=25)
    reader._cache.container = churn
    expected = store.get_sync("a/c/1", prototype=default_buffer_prototype())
    assert reader.get_sync("a/c/1", prototype=default_buffer_prototype()) == expected  # one acquire
    assert churn.left == 0
    np.testing.assert_array_equal(zarr.open_array(reader, path="a", mode="r")[:], np.arange(8))


# ---------------------------------------------------------------- a listing while a new shard appears
@pytest.mark.parametrize("ndim", [1, 3])
def test_a_listing_finds_chunks_absorbed_into_a_shard_created_during_its_walk(
    store_cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ndim: int
) -> None:
    # The walk reads the array directory (no shard there yet), then another store on
    # the same root consolidates: a new shard is renamed in and the loose files it
    # absorbed are removed before the walk reaches them.
    import zsaver.stores._listing as listing

    root = tmp_path / "store"
    shape = (6,) * ndim
    zarr.create_array(store_cls(root), name="a", shape=shape, chunks=(2,) * ndim, dtype="i4")[...] = 7
    reader, other = store_cls(root), store_cls(root)
    expected = set(reader.list_keys("a/"))
    assert other.count_chunks("a/") == {"loose": 3 ** ndim, "in_shards": 0}
    real_walk = listing.walk_keys

    def walk_then_consolidate(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        walk = real_walk(*args, **kwargs)  # type: ignore[arg-type]
        yield next(walk)  # the array directory is read before the consolidation
        monkeypatch.setattr(listing, "walk_keys", real_walk)  # the consolidation's own walk
        other.consolidate()
        yield from walk

    monkeypatch.setattr(listing, "walk_keys", walk_then_consolidate)
    assert set(reader.list_keys("a/")) == expected
    assert listing.walk_keys is real_walk  # the consolidation did happen during the listing
    monkeypatch.undo()
    assert other.count_chunks("a/") == {"loose": 0, "in_shards": 3 ** ndim}
    np.testing.assert_array_equal(zarr.open_array(store_cls(root), path="a")[...], np.full(shape, 7))
