"""Behaviour of the shard stores through zarr and through the Store API."""

from __future__ import annotations

import gc
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype

from zsaver.errors import StoreConfigError
from zsaver.stores import H5ShardStore, ZipShardStore, open_store

PROTO = default_buffer_prototype()


def _files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).parts[0].startswith(".zsaver")
    )


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("ndim", [1, 2, 3, 4, 5])
def test_round_trip_every_rank_before_and_after_consolidation(
    store_cls: type, tmp_path: Path, zarr_format: int, ndim: int
) -> None:
    store = store_cls(tmp_path, chunks_per_shard=(2,))
    shape = (5, 4, 3, 3, 2)[:ndim]
    data = np.random.default_rng(ndim).standard_normal(shape).astype("f4")
    root = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    arr = root.create_group("inner").create_array(
        "a", shape=shape, chunks=(2, 3, 2, 2, 1)[:ndim], dtype="f4", fill_value=0.0
    )
    arr[...] = data
    np.testing.assert_array_equal(zarr.open_array(store, path="inner/a")[...], data)
    keys_before = store.list_keys()
    assert store.consolidate() > 0
    assert store.list_keys() == keys_before  # same zarr keys, whatever the files are
    reopened = store_cls(tmp_path)
    np.testing.assert_array_equal(zarr.open_array(reopened, path="inner/a")[...], data)
    chunk_files = [f for f in _files(tmp_path)
                   if not f.endswith(("zarr.json", ".zarray", ".zgroup", ".zattrs"))]
    assert chunk_files and all(f.endswith(store._container.suffix) for f in chunk_files)
    assert store.consolidate() == 0  # idempotent


def test_file_count_after_consolidation_is_shards_plus_metadata(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path)  # default: 64 chunks along axis 0 per shard
    arr = zarr.create_array(store, name="x", shape=(200, 8), chunks=(1, 4), dtype="i4")
    arr[:] = np.arange(1600).reshape(200, 8)
    assert len(_files(tmp_path)) == 400 + 2  # chunks, array and root zarr.json
    store.consolidate()
    assert _files(tmp_path) == ["x/" + f"shard-{i}.0{store._container.suffix}"
                                for i in range(4)] + ["x/zarr.json", "zarr.json"]
    assert sorted(os.listdir(tmp_path / "x")) == sorted(
        ["zarr.json"] + [f"shard-{i}.0{store._container.suffix}" for i in range(4)])
    np.testing.assert_array_equal(arr[:], np.arange(1600).reshape(200, 8))


def test_keys_answer_in_zarr_terms_for_chunks_inside_shards(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path, chunks_per_shard=4)
    arr = zarr.create_array(store, name="g/x", shape=(8,), chunks=(2,), dtype="u1",
                            zarr_format=2)
    arr[:] = np.arange(8)
    store.consolidate()
    chunk_keys = [k for k in store.list_keys("g/x/") if not k.rsplit("/", 1)[1].startswith(".")]
    assert chunk_keys == ["g/x/0", "g/x/1", "g/x/2", "g/x/3"]
    assert "g/x/.zarray" in store.list_keys("g/")
    assert sorted(os.listdir(tmp_path / "g" / "x"))[-1].startswith("shard-")
    assert store.exists_sync("g/x/3") and not store.exists_sync("g/x/9")
    assert store.getsize_sync("g/x/1") == len(store.get_sync("g/x/1", prototype=PROTO))
    with pytest.raises(FileNotFoundError):
        store.getsize_sync("g/x/9")

    store.delete_sync("g/x/1")  # lives in a shard: recorded by a tombstone
    assert not store.exists_sync("g/x/1")
    assert store.get_sync("g/x/1", prototype=PROTO) is None
    assert "g/x/1" not in store.list_keys()
    store.consolidate()
    assert "g/x/1" not in store.list_keys()
    assert arr[:].tolist() == [0, 1, 0, 0, 4, 5, 6, 7]
    assert not any(f.endswith("deleted") for f in _files(tmp_path))


def test_rewritten_chunk_is_listed_once_and_shard_holds_one_copy(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path)
    arr = zarr.create_array(store, name="x", shape=(4,), chunks=(2,), dtype="i8")
    arr[:] = [1, 2, 3, 4]
    store.consolidate()
    arr[:2] = [9, 9]  # a loose copy now shadows the shard's
    assert store.list_keys("x/c") == ["x/c/0", "x/c/1"]
    assert arr[:].tolist() == [9, 9, 3, 4]
    store.consolidate()
    shard = tmp_path / "x" / f"shard-0{store._container.suffix}"
    if shard.suffix == ".zip":  # zip could hold a name twice; HDF5 names are unique
        with zipfile.ZipFile(shard) as zf:
            assert sorted(zf.namelist()) == ["0", "1"]
    else:
        with h5py.File(shard, "r") as f:
            assert sorted(f) == ["0", "1"]
    assert arr[:].tolist() == [9, 9, 3, 4]


def test_h5_shard_is_readable_with_plain_h5py(tmp_path: Path) -> None:
    store = H5ShardStore(tmp_path)
    arr = zarr.create_array(store, name="x", shape=(4,), chunks=(2,), dtype="u1",
                            compressors=None)
    arr[:] = [1, 2, 3, 4]
    store.consolidate()
    with h5py.File(tmp_path / "x" / "shard-0.h5", "r") as f:
        assert f["1"][()].tobytes() == bytes([3, 4])



@pytest.mark.parametrize("container", ["h5", "zip"])
def test_container_write_round_trips_members_of_any_size(container: str, tmp_path: Path) -> None:
    from zsaver.stores._h5 import H5Container
    from zsaver.stores._zip import ZipContainer

    shard = H5Container() if container == "h5" else ZipContainer()
    members = {"0.0": b"", "1.0": memoryview(b"abc"), "2.0": os.urandom(300_000), "3.0": b"\0"}
    paths = [str(tmp_path / f"s{i}{shard.suffix}") for i in range(2)]
    for path in paths:
        shard.write(path, list(members.items()))
    index = shard.read_index(paths[0])
    assert sorted(index) == sorted(members)
    with open(paths[0], "rb") as f:
        for name, data in members.items():
            assert shard.read_member(paths[0], name) == bytes(data)
            offset, length = index[name]
            assert length == len(data)
            if length:  # the index points at the raw bytes, as the store's preads need
                assert os.pread(f.fileno(), length, offset) == bytes(data)
    # No timestamps inside: the same members give byte-identical shards.
    assert Path(paths[0]).read_bytes() == Path(paths[1]).read_bytes()
    if container == "h5":
        with h5py.File(paths[0], "r") as f:  # plain h5py reads every member
            assert {n: f[n][()].tobytes() for n in f} == {n: bytes(d) for n, d in members.items()}

def test_write_direct_creates_no_loose_files_and_survives_flush(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path, write_direct=True, chunks_per_shard=2)
    arr = zarr.create_array(store, name="x", shape=(6, 2), chunks=(1, 2), dtype="i4")
    arr[:] = np.arange(12).reshape(6, 2)
    assert _files(tmp_path) == ["x/zarr.json", "zarr.json"]  # chunks are buffered
    assert arr[:].sum() == 66  # read-your-writes from the buffer
    store.flush()
    assert _files(tmp_path) == ["x/shard-0.0" + store._container.suffix,
                                "x/shard-1.0" + store._container.suffix,
                                "x/shard-2.0" + store._container.suffix, "x/zarr.json",
                                "zarr.json"]
    np.testing.assert_array_equal(zarr.open_array(store_cls(tmp_path), path="x")[:],
                                  np.arange(12).reshape(6, 2))


def test_reader_sees_shard_consolidated_by_another_store_object(
    store_cls: type, tmp_path: Path
) -> None:
    writer = store_cls(tmp_path, chunks_per_shard=8)
    arr = zarr.create_array(writer, name="x", shape=(4,), chunks=(1,), dtype="i4")
    arr[:] = [1, 2, 3, 4]
    writer.consolidate()
    reader = store_cls(tmp_path)
    view = zarr.open_array(reader, path="x")
    assert view[:].tolist() == [1, 2, 3, 4]  # reader caches the shard handle
    arr[:] = [5, 6, 7, 8]
    writer.consolidate()  # replaces the shard file; reader is not reopened
    assert view[:].tolist() == [5, 6, 7, 8]


def test_pickled_store_reopens_lazily_and_handles_reopen_after_fork(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path)
    arr = zarr.create_array(store, name="x", shape=(4,), chunks=(1,), dtype="i4")
    arr[:] = [1, 2, 3, 4]
    store.consolidate()
    assert arr[:].tolist() == [1, 2, 3, 4]
    blob = pickle.dumps(store)
    assert len(blob) < 600 and b"_cache" not in blob
    clone = pickle.loads(blob)
    assert clone == store and len(clone._cache) == 0
    assert zarr.open_array(clone, path="x")[:].tolist() == [1, 2, 3, 4]
    pid = os.fork()
    if pid == 0:  # child: the inherited handles are dropped and reopened
        try:
            ok = zarr.open_array(store, path="x")[:].tolist() == [1, 2, 3, 4]
            ok = ok and store._cache._pid == os.getpid()
        except BaseException:  # never back into pytest from a forked child
            (tmp_path / "child-error.txt").write_text(traceback.format_exc())
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    error = tmp_path / "child-error.txt"
    assert os.waitstatus_to_exitcode(status) == 0, error.read_text() if error.exists() else "wrong data"


def test_handle_cache_is_bounded(store_cls: type, tmp_path: Path) -> None:
    store = store_cls(tmp_path, chunks_per_shard=1, max_open_shards=3)
    arr = zarr.create_array(store, name="x", shape=(10,), chunks=(1,), dtype="i4")
    arr[:] = np.arange(10)
    store.consolidate()
    assert arr[:].tolist() == list(range(10))
    assert len(store._cache) == 3


def test_marker_records_store_type_and_options(tmp_path: Path) -> None:
    H5ShardStore(tmp_path, chunks_per_shard=(4, None))._ensure_open_sync()
    assert isinstance(open_store(tmp_path), H5ShardStore)
    assert open_store(tmp_path)._build_layout  # opens with the recorded layout
    with pytest.raises(StoreConfigError, match="holds a 'h5' store"):
        ZipShardStore(tmp_path)._ensure_open_sync()
    with pytest.raises(StoreConfigError, match="was written with"):
        H5ShardStore(tmp_path, chunks_per_shard=8)._ensure_open_sync()
    store = H5ShardStore(tmp_path)
    store._ensure_open_sync()
    assert store._layout.chunks_per_shard == (4, None)


@pytest.mark.parametrize("bad", [0, -1, (2, 0), "x", 1.5])
def test_bad_chunks_per_shard_is_refused_before_anything_is_written(
    tmp_path: Path, bad: object
) -> None:
    with pytest.raises(StoreConfigError, match="chunks_per_shard"):
        H5ShardStore(tmp_path / "s", chunks_per_shard=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists()


def test_reserved_keys_are_refused(store_cls: type, tmp_path: Path) -> None:
    store = store_cls(tmp_path)
    buf = PROTO.buffer.from_bytes(b"x")
    for key in ("a/b.zsaver-deleted", "a.zsaver-partial", ".zsaver-store.json"):
        with pytest.raises(ValueError, match="reserved"):
            store.set_sync(key, buf)


async def test_list_dir_of_an_array_shows_chunk_keys_not_shard_files(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path)
    group = zarr.open_group(store, mode="w")
    group.create_array("v3", shape=(4,), chunks=(1,), dtype="i1")[:] = 1
    group.create_array("v2", shape=(4,), chunks=(1,), dtype="i1",
                       chunk_key_encoding={"name": "v2", "separator": "."})[:] = 2
    store.consolidate()
    assert sorted([k async for k in store.list_dir("")]) == ["v2", "v3", "zarr.json"]
    assert sorted([k async for k in store.list_dir("v3")]) == ["c", "zarr.json"]
    assert sorted([k async for k in store.list_dir("v3/c/")]) == ["0", "1", "2", "3"]
    assert sorted([k async for k in store.list_dir("v2")]) == ["0", "1", "2", "3", "zarr.json"]
    assert sorted(group.array_keys()) == ["v2", "v3"]


def test_consolidate_removes_temporaries_of_killed_writers_only_when_stale(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path)
    zarr.create_array(store, name="x", shape=(4,), chunks=(1,), dtype="i4")[:] = 3
    stale = tmp_path / "x" / "c" / "0.0123.zsaver-partial"
    fresh = tmp_path / "x" / "c" / "1.0456.zsaver-partial"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    store.consolidate()
    assert not stale.exists()
    assert fresh.exists()  # may belong to a writer that is running right now
    assert store.list_keys("x/c") == ["x/c/0", "x/c/1", "x/c/2", "x/c/3"]


@pytest.mark.parametrize("write_direct", [False, True])
@pytest.mark.parametrize("key", ["x/c/1", "new/zarr.json"])
def test_set_if_not_exists_lets_exactly_one_of_racing_threads_win(
    store_cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, write_direct: bool
) -> None:
    store = store_cls(tmp_path, write_direct=write_direct)
    zarr.create_array(store, name="x", shape=(4,), chunks=(1,), dtype="i4")
    original = type(store).exists_sync

    def slow_exists(self: object, k: str) -> bool:  # widen the check-then-write window
        found = original(self, k)
        time.sleep(0.02)
        return found

    monkeypatch.setattr(type(store), "exists_sync", slow_exists)
    barrier = threading.Barrier(6)
    seen: list[bytes] = []

    def racer(i: int) -> None:
        barrier.wait()
        store.set_if_not_exists_sync(key, PROTO.buffer.from_bytes(f"value {i}".encode()))
        got = store.get_sync(key, prototype=PROTO)
        assert got is not None
        seen.append(got.to_bytes())

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get_sync(key, prototype=PROTO)
    assert final is not None
    assert seen == [final.to_bytes()] * 6  # nobody overwrote the value another already read


def test_set_if_not_exists_keeps_a_chunk_that_lives_in_a_shard(store_cls: type, tmp_path: Path) -> None:
    store = store_cls(tmp_path)
    arr = zarr.create_array(store, name="x", shape=(4,), chunks=(1,), dtype="i4")
    arr[:] = [1, 2, 3, 4]
    store.consolidate()
    before = store.get_sync("x/c/2", prototype=PROTO)
    store.set_if_not_exists_sync("x/c/2", PROTO.buffer.from_bytes(b"other"))
    assert store.get_sync("x/c/2", prototype=PROTO) == before
    assert arr[:].tolist() == [1, 2, 3, 4]
    assert not (tmp_path / "x" / "c" / "2").exists()  # no loose copy was made
    store.delete_sync("x/c/2")  # a tombstoned chunk no longer exists: the write lands
    store.set_if_not_exists_sync("x/c/2", before)
    assert arr[:].tolist() == [1, 2, 3, 4]


# --- found by an adversarial review ---------------------------------------------


def test_write_direct_delete_during_a_flush_in_another_thread_stays_deleted(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path, write_direct=True, chunks_per_shard=4)
    zarr.create_array(store, name="x", shape=(4,), chunks=(1,), dtype="u1")
    store.set_sync("x/c/0", PROTO.buffer.from_bytes(b"old"))
    rewrite, deleter = store._rewrite_shard, []

    def slow_rewrite(*args, **kwargs):  # the flush is mid-way when the other thread deletes
        if not deleter:
            deleter.append(threading.Thread(target=store.delete_sync, args=("x/c/0",)))
            deleter[0].start()
            time.sleep(0.2)
        return rewrite(*args, **kwargs)

    store._rewrite_shard = slow_rewrite
    store.flush()
    deleter[0].join()
    assert store.get_sync("x/c/0") is None
    assert store_cls(tmp_path).get_sync("x/c/0") is None


def test_write_direct_chunks_are_seen_by_zarrs_read_only_mode(store_cls: type, tmp_path: Path) -> None:
    store = store_cls(tmp_path, write_direct=True)
    zarr.create_array(store, name="x", shape=(8,), chunks=(2,), dtype="i4")[:] = np.arange(1, 9)
    assert zarr.open_array(store, path="x", mode="r")[:].tolist() == list(range(1, 9))


def test_a_read_racing_a_write_after_a_delete_never_returns_the_deleted_value(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path)
    zarr.create_array(store, name="x", shape=(2,), chunks=(1,), dtype="u1")
    store.set_sync("x/c/0", PROTO.buffer.from_bytes(b"10"))
    store.consolidate()
    store.delete_sync("x/c/0")  # a tombstone voids the shard copy
    read_member = store._read_shard_member

    def writer_slips_in(ref):  # after the reader's loose-file check, before its tombstone check
        store.set_sync("x/c/0", PROTO.buffer.from_bytes(b"20"))
        return read_member(ref)

    store._read_shard_member = writer_slips_in
    assert store.get_sync("x/c/0").to_bytes() == b"20"


def test_the_stores_own_files_are_not_keys(store_cls: type, tmp_path: Path) -> None:
    store = store_cls(tmp_path)
    zarr.create_array(store, name="x", shape=(4,), chunks=(2,), dtype="u1")[:] = [1, 2, 3, 4]
    store.consolidate()
    store.delete_sync("x/c/0")
    shard = f"x/shard-0{store._container.suffix}"
    for name in [".zsaver-store.json", shard, "x/c/0.zsaver-deleted"]:
        assert store.get_sync(name) is None and not store.exists_sync(name)
        with pytest.raises(FileNotFoundError):
            store.getsize_sync(name)
    with pytest.raises(ValueError, match="store's own files"):
        store.delete_sync(shard)
    assert zarr.open_array(store, path="x")[:].tolist() == [0, 0, 3, 4]


def test_non_canonical_chunk_like_keys_stay_separate_keys(store_cls: type, tmp_path: Path) -> None:
    store = store_cls(tmp_path)
    zarr.create_array(store, name="x", shape=(4,), chunks=(1,), dtype="u1")
    values = {"x/c/1": b"real", "x/c/01": b"zero-one", "x/c/\u0661": b"arabic-one"}
    for key, value in values.items():
        store.set_sync(key, PROTO.buffer.from_bytes(value))
    store.consolidate()
    assert {k: store.get_sync(k).to_bytes() for k in values} == values


def test_a_write_retries_when_consolidation_removes_its_directory(
    store_cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_cls(tmp_path)
    zarr.create_array(store, name="x", shape=(4, 2), chunks=(1, 2), dtype="u1")
    makedirs, calls = os.makedirs, []

    def racing_makedirs(path, exist_ok=False):  # the parent vanished between two mkdirs
        calls.append(path)
        if len(calls) == 1:
            raise FileNotFoundError(path)
        return makedirs(path, exist_ok=exist_ok)

    monkeypatch.setattr(os, "makedirs", racing_makedirs)
    store.set_sync("x/c/3/0", PROTO.buffer.from_bytes(b"ok"))
    assert len(calls) >= 2 and store.get_sync("x/c/3/0").to_bytes() == b"ok"


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_read_only_views_and_unpickled_copies_leave_no_shard_descriptors_open(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path, chunks_per_shard=1)
    data = np.arange(40, dtype="i4").reshape(20, 2)
    zarr.create_array(store, name="x", shape=(20, 2), chunks=(1, 2), dtype="i4")[:] = data
    store.consolidate()  # 20 shard files
    np.testing.assert_array_equal(zarr.open_array(store, path="x")[:], data)  # handles are open
    before = _open_descriptors()
    for _ in range(10):  # zarr's mode="r" reads through store.with_read_only(True)
        np.testing.assert_array_equal(zarr.open_array(store, path="x", mode="r")[:], data)
    assert _open_descriptors() <= before + 2  # the view reads through the store's handles
    for _ in range(10):
        clone = pickle.loads(pickle.dumps(store))
        np.testing.assert_array_equal(zarr.open_array(clone, path="x", mode="r")[:], data)
        del clone
        gc.collect()
    assert _open_descriptors() <= before + 2  # a dropped copy closes its handles


@pytest.mark.parametrize("write_direct", [False, True])
def test_set_refuses_a_key_naming_a_shard_file_and_writes_nothing(
    store_cls: type, tmp_path: Path, write_direct: bool
) -> None:
    store = store_cls(tmp_path, chunks_per_shard=64, write_direct=write_direct)
    zarr.create_array(store, name="x", shape=(10, 2), chunks=(1, 2), dtype="i4")[:] = 5
    store.consolidate()
    shard = tmp_path / "x" / f"shard-0.0{store._container.suffix}"
    before = shard.read_bytes()
    key = f"x/shard-0.0{store._container.suffix}"
    for write in (store.set_sync, store.set_if_not_exists_sync):
        with pytest.raises(ValueError, match=re.escape(repr(key))):
            write(key, PROTO.buffer.from_bytes(b"oops"))
    store.close()
    assert shard.read_bytes() == before
    assert (zarr.open_array(store_cls(tmp_path), path="x", mode="r")[:] == 5).all()


def test_a_forked_child_never_flushes_the_parents_write_direct_buffer(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path, chunks_per_shard=64, write_direct=True)
    arr = zarr.create_array(store, name="x", shape=(10,), chunks=(1,), dtype="i4", fill_value=0)
    arr[0] = 1  # buffered, not flushed
    holding, forked = threading.Event(), threading.Event()

    def hold_buffer_lock() -> None:  # another thread holds the buffer's lock during the fork
        with store._buffer_lock:
            holding.set()
            forked.wait()

    holder = threading.Thread(target=hold_buffer_lock)
    holder.start()
    holding.wait()
    go_read, go_write = os.pipe()  # the parent says when it has flushed its newer value
    pid = os.fork()
    if pid == 0:  # child: its own chunk only, and never the parent's stale x[0] = 1
        code = 1
        try:
            os.read(go_read, 1)
            child = zarr.open_array(store, path="x", mode="r+")
            seen = int(child[0])  # from the shard: the buffered 1 is not the child's
            child[9] = 99
            store.flush()
            code = 0 if seen == 2 else 2
        finally:
            os._exit(code)
    forked.set()
    holder.join()
    arr[0] = 2  # newer than what the child inherited
    store.flush()
    os.write(go_write, b"go")
    deadline = time.monotonic() + 30
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if waited[0] == 0:  # a lock inherited in its held state would hang the child
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung")
    assert os.waitstatus_to_exitcode(waited[1]) == 0
    assert zarr.open_array(store_cls(tmp_path), path="x")[:].tolist() == [2] + [0] * 8 + [99]


def _tombstones(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*.zsaver-deleted")]


def test_write_direct_flush_applies_deletions_and_keeps_the_file_count_flat(
    store_cls: type, tmp_path: Path
) -> None:
    store = store_cls(tmp_path, chunks_per_shard=(64,), write_direct=True)
    arr = zarr.create_array(store, name="x", shape=(1000, 4), chunks=(10, 4), dtype="f4",
                            fill_value=0)
    arr[:] = 1.0
    store.flush()
    files = _files(tmp_path)
    arr[:500] = 0.0  # zarr deletes the 50 chunks equal to the fill value
    assert not store.exists_sync("x/c/0/0") and store.exists_sync("x/c/50/0")
    store.flush()
    assert _files(tmp_path) == files and _tombstones(tmp_path) == []
    expected = np.ones((1000, 4), dtype="f4")
    expected[:500] = 0.0
    fresh = store_cls(tmp_path)
    np.testing.assert_array_equal(zarr.open_array(fresh, path="x")[:], expected)
    assert fresh.list_keys("x/c/") == [f"x/c/{i}/0" for i in range(50, 100)]
    arr[:10] = 2.0  # deleted then set again: the set wins
    store.delete_sync("x/c/60/0")
    store.close()
    expected[:10], expected[600:610] = 2.0, 0.0
    np.testing.assert_array_equal(zarr.open_array(store_cls(tmp_path), path="x")[:], expected)
    assert _files(tmp_path) == files and _tombstones(tmp_path) == []


_DELETE_FLUSH_LOOP = """
import sys, numpy as np, zarr
from zsaver.stores import H5ShardStore, ZipShardStore
cls = {"h5": H5ShardStore, "zip": ZipShardStore}[sys.argv[1]]
store = cls(sys.argv[2], write_direct=True)
arr = zarr.open_array(store, path="x", mode="r+")
print("ready", flush=True)
for step in range(1, 10_000):
    if step % 2:  # every chunk gets the value ``step``
        arr[:] = step
    else:  # a third of the chunks are deleted (zarr deletes chunks equal to the fill value)
        for chunk in range(step % 3, 12, 3):
            arr[chunk] = 0
    store.flush()
    print(f"flushed {step}", flush=True)
"""


def _after_step(step: int) -> list[int]:
    """Chunk values once steps 1..``step`` of the loop above are done."""
    if step == 0:
        return list(range(1, 13))
    values = [step if step % 2 else step - 1] * 12
    if not step % 2:
        values[step % 3 :: 3] = [0] * 4
    return values


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
def test_write_direct_deletes_flushed_before_a_sigkill_stay_deleted(
    store_cls: type, tmp_path: Path, delay: float
) -> None:
    store = store_cls(tmp_path, chunks_per_shard=4)
    zarr.create_array(store, name="x", shape=(12,), chunks=(1,), dtype="i4",
                      fill_value=0)[:] = np.arange(1, 13)
    store.consolidate()
    kind = "h5" if store_cls is H5ShardStore else "zip"
    proc = subprocess.Popen([sys.executable, "-c", _DELETE_FLUSH_LOOP, kind, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.kill()
    flushed = [int(n) for n in proc.stdout.read().split()[1::2]]  # "flushed <step>" lines
    proc.wait()
    last = flushed[-1] if flushed else 0
    got = zarr.open_array(store_cls(tmp_path), path="x")[:].tolist()
    before, after = _after_step(last), _after_step(last + 1)
    # A flushed step holds in full; the step cut short may be partly done, chunk by chunk.
    assert all(g in (b, a) for g, b, a in zip(got, before, after, strict=True)), (last, got)
    # Tombstones left can only be those of a deleting step cut short.
    cut_short = set(range((last + 1) % 3, 12, 3)) if (last + 1) % 2 == 0 else set()
    assert {int(Path(t).name.split(".")[0]) for t in _tombstones(tmp_path)} <= cut_short
    store_cls(tmp_path).consolidate()  # tombstones of the step cut short are absorbed
    assert zarr.open_array(store_cls(tmp_path), path="x")[:].tolist() == got
    assert _tombstones(tmp_path) == []
