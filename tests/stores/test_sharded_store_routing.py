"""ShardedStore routing: chunks land in the right sub-store, for every key encoding zarr writes."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from routing_helpers import MemoryShards
from zarr.core.sync import _collect_aiterator, sync
from zarr.storage import LocalStore, MemoryStore, ZipStore

from zsaver.errors import StoreConfigError
from zsaver.stores import (
    LRUStoreCache,
    ShardedStore,
    StoreTable,
    StoreTemplate,
    chunk_key_to_indices,
)

# (zarr_format, chunk_key_encoding or None for zarr 2, separator)
ENCODINGS = {
    "v3-default-slash": (3, {"name": "default", "separator": "/"}),
    "v3-default-dot": (3, {"name": "default", "separator": "."}),
    "v3-v2-dot": (3, {"name": "v2", "separator": "."}),
    "v2-dot": (2, {"name": "v2", "separator": "."}),
    "v2-slash": (2, {"name": "v2", "separator": "/"}),
}

# (shape, chunks, n_dims): 100+ chunks along the first sharded dim, chunk size != 1 on
# sharded dims where it matters, a partial last chunk in the first layout.
LAYOUTS = {
    "1d-115-chunks-partial": ((231,), (2,), 1),
    "2d-101x4-shard2": ((303, 8), (3, 2), 2),
    "3d-12x101-shard2": ((24, 101, 4), (2, 1, 4), 2),  # multi-digit indices on a later sharded dim
    "4d-shard3": ((101, 3, 2, 5), (1, 1, 1, 5), 3),
    "4d-shard4": ((101, 2, 2, 2), (1, 1, 1, 1), 4),
}


def _expected_chunk_key(path: str, index: tuple[int, ...], encoding: dict[str, str]) -> str:
    sep = encoding["separator"]
    body = sep.join(map(str, index))
    return f"{path}/c{sep}{body}" if encoding["name"] == "default" else f"{path}/{body}"


def _keys(store: Any) -> set[str]:
    return set(sync(_collect_aiterator(store.list())))


def _create(store: Any, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], fmt: int, enc: dict[str, str], **kw: Any) -> zarr.Array:
    if fmt == 2:
        kw.setdefault("chunk_key_encoding", {"name": "v2", "separator": enc["separator"]})
    else:
        kw.setdefault("chunk_key_encoding", enc)
    return zarr.create_array(store, name=name, shape=shape, chunks=chunks, dtype="i4", zarr_format=fmt, **kw)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_chunk_lands_in_the_store_of_its_shard_index(layout: str, encoding: str) -> None:
    shape, chunks, n_dims = LAYOUTS[layout]
    fmt, enc = ENCODINGS[encoding]
    shards = MemoryShards()
    base = MemoryStore()
    store = ShardedStore(base, array_shards={"grp/x": (n_dims, shards)})
    zarr.create_group(store, path="grp", zarr_format=fmt)
    arr = _create(store, "grp/x", shape, chunks, fmt, enc)
    data = np.arange(1, np.prod(shape) + 1, dtype="i4").reshape(shape)  # no fill values: every chunk is written
    arr[...] = data

    grid = [-(-s // c) for s, c in zip(shape, chunks, strict=True)]
    expected = {
        index: _expected_chunk_key("grp/x", index, enc) for index in itertools.product(*map(range, grid))
    }
    assert len(shards.stores) == int(np.prod(grid[:n_dims]))
    for shard_index, sub in shards.stores.items():
        want = {key for index, key in expected.items() if index[:n_dims] == shard_index}
        assert set(sub._store_dict) == want, shard_index
    # metadata stays in the base, and no chunk is there
    assert all(k.rsplit("/", 1)[-1] in {"zarr.json", ".zarray", ".zattrs", ".zgroup"} for k in base._store_dict)
    assert _keys(store) == set(expected.values()) | set(base._store_dict)
    np.testing.assert_array_equal(zarr.open_array(store, path="grp/x", mode="r")[...], data)


@pytest.mark.parametrize("fmt", [2, 3])
def test_uncompressed_array_round_trips(fmt: int) -> None:
    shards = MemoryShards()
    store = ShardedStore(MemoryStore(), array_shards={"x": (1, shards)})
    arr = zarr.create_array(store, name="x", shape=(25, 2), chunks=(2, 2), dtype="f8", zarr_format=fmt, compressors=None)
    data = np.random.default_rng(0).random((25, 2))
    arr[:] = data
    assert len(shards.stores) == 13
    key = "x/12.0" if fmt == 2 else "x/c/12/0"
    # uncompressed: the stored chunk is the raw rows, the partial chunk padded with the fill value
    assert shards.stores[(12,)]._store_dict[key].to_bytes() == data[24:].tobytes() + bytes(16)
    np.testing.assert_array_equal(zarr.open_array(store, path="x")[:], data)


def test_zarr3_sharding_codec_outer_chunks_are_routed() -> None:
    shards = MemoryShards()
    store = ShardedStore(MemoryStore(), array_shards={"x": (1, shards)})
    arr = zarr.create_array(store, name="x", shape=(40, 4), chunks=(2, 4), shards=(10, 4), dtype="i2")
    arr[:] = np.arange(160, dtype="i2").reshape(40, 4)
    assert sorted(shards.stores) == [(0,), (1,), (2,), (3,)]  # one zarr shard object per sub-store
    np.testing.assert_array_equal(arr[3:37], np.arange(160, dtype="i2").reshape(40, 4)[3:37])


def test_growing_array_opens_new_shards_and_listing_follows() -> None:
    shards = MemoryShards()
    store = ShardedStore(MemoryStore(), array_shards={"x": (1, shards)})
    arr = zarr.create_array(store, name="x", shape=(4,), chunks=(2,), dtype="i4")
    arr[:] = [1, 2, 3, 4]
    arr.append(np.array([5, 6, 7], dtype="i4"))
    assert sorted(shards.stores) == [(0,), (1,), (2,), (3,)]
    assert {k for k in _keys(store) if "/c/" in k} == {"x/c/0", "x/c/1", "x/c/2", "x/c/3"}
    np.testing.assert_array_equal(zarr.open_array(store, path="x")[:], np.arange(1, 8))


def test_listing_after_reopen_finds_shards_from_metadata(tmp_path: Path) -> None:
    template = StoreTemplate({"type": "local", "root": str(tmp_path / "s{0}")})
    first = ShardedStore(LocalStore(tmp_path / "base"), array_shards={"x": (1, template)})
    zarr.create_array(first, name="x", shape=(30,), chunks=(2,), dtype="i4")[:] = np.arange(1, 31)
    again = ShardedStore(LocalStore(tmp_path / "base"), array_shards={"x": (1, template)})
    assert {k for k in _keys(again) if "/c/" in k} == {f"x/c/{i}" for i in range(15)}
    assert sync(_collect_aiterator(again.list_dir("x"))) == ("c", "zarr.json")
    assert sorted(sync(_collect_aiterator(again.list_dir("x/c")))) == sorted(str(i) for i in range(15))


def test_mount_holds_its_group_as_a_standalone_hierarchy(tmp_path: Path) -> None:
    mounted = LocalStore(tmp_path / "archive")
    store = ShardedStore(MemoryStore(), mounts={"runs/old": mounted})
    root = zarr.open_group(store, mode="w")
    root.create_group("runs").create_group("old").create_array("y", shape=(5,), dtype="i8")[:] = np.arange(5)
    root.create_array("runs/old_but_not_mounted", shape=(2,), dtype="i8")[:] = [7, 8]
    assert (tmp_path / "archive" / "y" / "zarr.json").exists()
    assert not (tmp_path / "archive" / "old_but_not_mounted").exists()  # '/' boundary, not string prefix
    np.testing.assert_array_equal(zarr.open_array(mounted, path="y")[:], np.arange(5))
    reopened = zarr.open_group(store, mode="r")
    assert sorted(reopened["runs"].group_keys()) == ["old"]
    assert sorted(reopened["runs"].array_keys()) == ["old_but_not_mounted"]
    assert "runs/old/y/c/0" in _keys(store)


def test_open_group_sees_arrays_in_mounts_and_shards() -> None:
    shards = MemoryShards()
    store = ShardedStore(MemoryStore(), mounts={"m": MemoryStore()}, array_shards={"m/a": (1, shards)})
    g = zarr.open_group(store, mode="w")
    g.create_group("m").create_array("a", shape=(12, 2), chunks=(1, 2), dtype="u1")[:] = 3
    members = dict(zarr.open_group(store, mode="r").members(max_depth=None))
    assert set(members) == {"m", "m/a"}
    assert int(members["m/a"][:].sum()) == 72
    assert len(shards.stores) == 12


@pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")
def test_xarray_open_zarr_reads_a_sharded_and_mounted_dataset(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset(
        {"temperature": (("time", "x"), np.arange(1, 241, dtype="f4").reshape(120, 2))},
        coords={"time": np.arange(120), "x": [10, 20]},
    )
    shards = MemoryShards()
    mounted = LocalStore(tmp_path / "archive")
    store = ShardedStore(MemoryStore(), mounts={"archive": mounted}, array_shards={"temperature": (1, shards)})
    ds.to_zarr(store, encoding={"temperature": {"chunks": (1, 2)}}, zarr_format=3)
    ds.to_zarr(store, group="archive", zarr_format=3)
    assert len(shards.stores) == 120
    xr.testing.assert_identical(xr.open_zarr(store).load(), ds)
    xr.testing.assert_identical(xr.open_zarr(store, group="archive").load(), ds)
    xr.testing.assert_identical(xr.open_zarr(mounted, consolidated=False).load(), ds)


@pytest.mark.parametrize(
    "mounts",
    [
        {"a": MemoryStore(), "a/b": MemoryStore()},
        {"a/b/c": MemoryStore(), "a/b": MemoryStore()},
        {"a/": MemoryStore(), "a": MemoryStore()},
    ],
)
def test_overlapping_mounts_are_refused(mounts: dict[str, Any]) -> None:
    with pytest.raises(StoreConfigError, match="overlapping mounts"):
        ShardedStore(MemoryStore(), mounts=mounts)


def test_mounts_sharing_a_string_prefix_do_not_overlap() -> None:
    store = ShardedStore(MemoryStore(), mounts={"a": MemoryStore(), "ab": MemoryStore()})
    sync(store.set("ab/k", zarr.core.buffer.cpu.Buffer.from_bytes(b"1")))
    assert "k" in store.mounts["ab"]._store_dict and not store.mounts["a"]._store_dict


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mounts": {"": MemoryStore()}}, "root"),
        ({"mounts": {"a": object()}}, "must be a zarr.abc.store.Store, got object"),
        ({"array_shards": {"x": (0, MemoryShards())}}, "n_dims must be an int >= 1, got 0"),
        ({"array_shards": {"x": (1, "nope")}}, "factory must be callable"),
        ({"array_shards": {"x": (1, MemoryShards()), "x/y": (1, MemoryShards())}}, "overlap"),
        ({"mounts": {"x/sub": MemoryStore()}, "array_shards": {"x": (1, MemoryShards())}}, "inside sharded array"),
        ({"mounts": {"../up": MemoryStore()}}, "clean zarr path"),
    ],
)
def test_bad_configuration_is_refused_with_a_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(StoreConfigError, match=message):
        ShardedStore(MemoryStore(), **kwargs)


def test_chunk_with_fewer_dims_than_sharded_dims_is_refused() -> None:
    store = ShardedStore(MemoryStore(), array_shards={"x": (2, MemoryShards())})
    with pytest.raises(StoreConfigError, match=r"1 grid dims .* first 2"):
        zarr.create_array(store, name="x", shape=(4,), chunks=(2,), dtype="i4")[:] = 1


@pytest.mark.parametrize(
    ("key", "indices"),
    [
        ("c/0", (0,)),
        ("c/123/4567/8", (123, 4567, 8)),
        ("c.10.2", (10, 2)),
        ("c", ()),
        ("10.2", (10, 2)),
        ("10/2", (10, 2)),
        ("0", (0,)),
        ("zarr.json", None),
        (".zarray", None),
        ("c/0.0", None),
        ("c/1/x", None),
        ("1./2", None),
        ("cat", None),
    ],
)
def test_chunk_keys_are_parsed_by_syntax_not_position(key: str, indices: tuple[int, ...] | None) -> None:
    assert chunk_key_to_indices(key) == indices


def test_pickled_store_reads_and_writes_the_same_data(tmp_path: Path) -> None:
    template = StoreTemplate({"type": "local", "root": str(tmp_path / "s{0}")})
    store = ShardedStore(LocalStore(tmp_path / "base"), mounts={"m": LocalStore(tmp_path / "m")}, array_shards={"x": (1, template)})
    zarr.create_array(store, name="x", shape=(20,), chunks=(3,), dtype="i4")[:] = np.arange(20)
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    np.testing.assert_array_equal(zarr.open_array(clone, path="x")[:], np.arange(20))
    zarr.open_array(clone, path="x")[19] = -1
    assert zarr.open_array(store, path="x")[19] == -1
    store.close()
    clone.close()


def test_read_only_store_refuses_writes_and_with_read_only_reopens_for_writing() -> None:
    shards = MemoryShards()
    store = ShardedStore(MemoryStore(), array_shards={"x": (1, shards)})
    zarr.create_array(store, name="x", shape=(6,), chunks=(2,), dtype="i4")[:] = 5
    reader = store.with_read_only(True)
    with pytest.raises(ValueError, match="read-only"):
        zarr.open_array(reader, path="x")[:] = 1
    writer = reader.with_read_only(False)
    zarr.open_array(writer, path="x")[:2] = 9
    np.testing.assert_array_equal(zarr.open_array(store, path="x")[:], [9, 9, 5, 5, 5, 5])


# --- map_shards -------------------------------------------------------------------


def _filled_store(shards: Any) -> ShardedStore:
    store = ShardedStore(MemoryStore(), mounts={"m": MemoryStore()}, array_shards={"x": (1, shards)})
    zarr.create_group(store, path="m")
    zarr.create_array(store, name="x", shape=(12, 2), chunks=(2, 2), dtype="i4")[:] = np.arange(1, 25).reshape(12, 2)
    zarr.create_array(store, name="m/y", shape=(3,), dtype="i4")[:] = [1, 2, 3]
    return store


def test_map_shards_applies_func_to_base_mounts_and_every_shard() -> None:
    shards = MemoryShards()
    store = _filled_store(shards)
    seen: list[Any] = []

    def wrap(sub: Any) -> LRUStoreCache:
        seen.append(sub)
        return LRUStoreCache(sub, 2**20)

    cached = store.map_shards(wrap)
    assert cached is not store and isinstance(cached, ShardedStore)
    assert isinstance(cached.base, LRUStoreCache) and cached.base.store is store.base
    assert cached.mounts["m"].store is store.mounts["m"]
    assert len(seen) == 2 + 6  # base, mount, six shards, each once
    tables = cached.shard_stores()["x"]
    assert sorted(tables) == [(i,) for i in range(6)]
    assert all(tables[i].store is shards.stores[i] for i in tables)
    np.testing.assert_array_equal(zarr.open_array(cached, path="x")[:], np.arange(1, 25).reshape(12, 2))
    assert _keys(cached) == _keys(store)


def test_map_shards_can_move_every_component_to_another_store_type(tmp_path: Path) -> None:
    store = _filled_store(MemoryShards())
    counter = itertools.count()

    def to_disk(sub: Any) -> LocalStore:
        target = LocalStore(tmp_path / f"part{next(counter)}")
        for key in sync(_collect_aiterator(sub.list())):
            sync(target.set(key, sync(sub.get(key, zarr.core.buffer.default_buffer_prototype()))))
        return target

    on_disk = store.map_shards(to_disk, grow=False)
    assert isinstance(on_disk.base, LocalStore) and isinstance(on_disk.mounts["m"], LocalStore)
    assert all(isinstance(s, LocalStore) for s in on_disk.shard_stores()["x"].values())
    np.testing.assert_array_equal(zarr.open_array(on_disk, path="x")[:], np.arange(1, 25).reshape(12, 2))
    np.testing.assert_array_equal(zarr.open_array(on_disk, path="m/y")[:], [1, 2, 3])
    with pytest.raises(StoreConfigError, match=r"no store for shard index \(6,\)"):
        zarr.open_array(on_disk, path="x").append(np.ones((2, 2), dtype="i4"))


def test_map_shards_with_grow_maps_shards_created_later() -> None:
    shards = MemoryShards()
    cached = _filled_store(shards).map_shards(lambda s: LRUStoreCache(s, 2**20))
    zarr.open_array(cached, path="x").append(np.full((2, 2), 99, dtype="i4"))
    new = cached.shard_stores()["x"][(6,)]
    assert isinstance(new, LRUStoreCache) and new.store is shards.stores[(6,)]


def test_map_shards_maps_a_store_shared_by_several_shards_once() -> None:
    shared = MemoryStore()
    store = ShardedStore(MemoryStore(), array_shards={"x": (1, StoreTable({(0,): shared, (1,): shared}))})
    zarr.create_array(store, name="x", shape=(4,), chunks=(2,), dtype="i4")[:] = [1, 2, 3, 4]
    calls: list[Any] = []
    mapped = store.map_shards(lambda s: calls.append(s) or LRUStoreCache(s, None))
    stores = mapped.shard_stores()["x"]
    assert stores[(0,)] is stores[(1,)] and len(calls) == 2
    assert sorted(_keys(mapped)) == ["x/c/0", "x/c/1", "x/zarr.json", "zarr.json"]


def test_list_dir_shows_an_array_that_has_chunks_but_no_metadata_yet() -> None:
    store = ShardedStore(MemoryStore(), array_shards={"g/x": (1, MemoryShards())})
    sync(store.set("g/x/c/4", zarr.core.buffer.cpu.Buffer.from_bytes(b"1")))
    assert sync(_collect_aiterator(store.list_dir("g"))) == ("x",)
    assert sync(_collect_aiterator(store.list_dir(""))) == ("g",)  # as list() has "g/x/c/4"


def test_overwriting_an_array_from_a_fresh_store_removes_chunks_in_every_shard(tmp_path: Path) -> None:
    template = StoreTemplate({"type": "local", "root": str(tmp_path / "s{0}")})

    def fresh() -> ShardedStore:  # a new instance has opened no shard yet
        return ShardedStore(LocalStore(tmp_path / "base"), array_shards={"x": (1, template)})

    zarr.create_array(fresh(), name="x", shape=(24,), chunks=(2,), dtype="i4")[:] = np.arange(1, 25)
    zarr.create_array(fresh(), name="x", shape=(24,), chunks=(2,), dtype="i4", overwrite=True)
    assert not [p for p in tmp_path.glob("s*/x/c/*")]
    np.testing.assert_array_equal(zarr.open_array(fresh(), path="x")[:], np.zeros(24))
    sync(fresh().clear())
    assert _keys(fresh()) == set()


def test_a_fresh_store_opens_zip_components_before_reading_or_listing(tmp_path: Path, monkeypatch) -> None:
    # zarr's ZipStore does not open itself for exists/getsize/listing: the routing
    # store must, for its mounts and for the shard stores it makes from templates.
    from zarr.storage import ZipStore

    monkeypatch.chdir(tmp_path)

    def make(mode: str) -> ShardedStore:
        return ShardedStore(
            LocalStore("results.zarr"),
            mounts={"archive/2024": ZipStore("2024.zip", mode=mode, read_only=mode == "r")},
            array_shards={"hot/x": (1, StoreTemplate({"type": "zip", "path": "x-{index}.zip", "mode": mode}))},
        )

    store = make("a")
    root = zarr.open_group(store, mode="a")
    root.create_group("archive").create_group("2024").create_array("z", shape=(4,), chunks=(2,), dtype="i4")[:] = 5
    root.create_group("hot").create_array("x", shape=(40, 4), chunks=(10, 4), dtype="f4")[:] = 1.0
    store.close()
    assert sync(make("r").exists("archive/2024/z/zarr.json"))
    assert sync(make("r").getsize("archive/2024/z/zarr.json")) > 0
    assert sync(make("r").exists("hot/x/c/1/0"))
    assert "hot/x/c/3/0" in sync(_collect_aiterator(make("r").list_prefix("")))
    assert sorted(sync(_collect_aiterator(make("r").list_dir("hot/x/c")))) == ["0", "1", "2", "3"]
    assert float(zarr.open_array(make("r"), path="hot/x", mode="r")[:].sum()) == 160.0
    members = sorted(name for name, _ in zarr.open_group(make("r"), mode="r").members(max_depth=None))
    assert members == ["archive", "archive/2024", "archive/2024/z", "hot", "hot/x"]


def test_shards_never_written_read_as_absent_and_listing_creates_none(tmp_path: Path) -> None:
    def make(read_only: bool) -> ShardedStore:
        template = StoreTemplate({"type": "local", "root": f"{tmp_path}/shard-{{0}}", "read_only": read_only})
        return ShardedStore(LocalStore(tmp_path / "base", read_only=read_only),
                            array_shards={"x": (1, template)}, read_only=read_only)

    arr = zarr.create_array(make(False), name="x", shape=(8,), chunks=(2,), dtype="i4", fill_value=0)
    arr[0:2] = 1  # only shard 0 is written
    reader = make(True)
    assert not sync(reader.exists("x/c/3"))
    assert sorted(sync(_collect_aiterator(reader.list_prefix("x/")))) == ["x/c/0", "x/zarr.json"]
    np.testing.assert_array_equal(zarr.open_array(make(True), path="x", mode="r")[:], [1, 1, 0, 0, 0, 0, 0, 0])
    writer = make(False)
    sync(_collect_aiterator(writer.list_prefix("")))
    sync(writer.delete("x/c/2"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("shard")) == ["shard-0"]


def test_cached_shards_and_mounts_with_nothing_on_disk_read_as_empty(tmp_path: Path) -> None:
    from zarr.storage import ZipStore

    def make(read_only: bool) -> ShardedStore:
        template = StoreTemplate({"type": "local", "root": f"{tmp_path}/shard-{{0}}", "read_only": read_only})
        store = ShardedStore(
            LocalStore(tmp_path / "base", read_only=read_only),
            mounts={"arch": ZipStore(tmp_path / "arch.zip", mode="r" if read_only else "a", read_only=read_only)},
            array_shards={"x": (1, template)}, read_only=read_only,
        )
        return store.map_shards(lambda shard: LRUStoreCache(shard, max_size=2**20))

    writer = make(False)
    zarr.create_array(writer, name="x", shape=(8,), chunks=(2,), dtype="i4", fill_value=0)[0:2] = 1
    writer.close()
    (tmp_path / "arch.zip").unlink(missing_ok=True)  # the mount holds nothing yet
    reader = make(True)
    np.testing.assert_array_equal(zarr.open_array(reader, path="x", mode="r")[:], [1, 1, 0, 0, 0, 0, 0, 0])
    assert not sync(reader.exists("arch/zarr.json"))
    assert "x/c/0" in sync(_collect_aiterator(reader.list_prefix("")))
    sync(_collect_aiterator(make(False).list_prefix("")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "shard-0"]


def test_a_read_only_view_shares_the_shards_the_writable_store_makes_later(tmp_path: Path) -> None:
    # Each shard an LRUStoreCache made by a StoreTemplate: a mode="r" view made before
    # the writer touched a shard must still see what the writer writes there.
    template = StoreTemplate({"type": "lru_cache", "max_size": 2**20,
                              "store": {"type": "local", "root": f"{tmp_path}/shard-{{index}}"}})
    store = ShardedStore(LocalStore(tmp_path / "base"), array_shards={"x": (1, template)})
    arr = zarr.create_array(store, name="x", shape=(4,), chunks=(2,), dtype="i4", fill_value=0)
    view = zarr.open_array(store, path="x", mode="r")
    np.testing.assert_array_equal(view[:], [0, 0, 0, 0])
    arr[2:4] = 7
    np.testing.assert_array_equal(view[:], [0, 0, 7, 7])
    arr[2:4] = 8
    np.testing.assert_array_equal(view[:], [0, 0, 8, 8])


def test_pickled_zip_mount_is_copied_without_opening_or_truncating_the_zip(tmp_path: Path) -> None:
    """zarr's ZipStore opens its file as soon as it is unpickled: mode "r" then fails on a
    missing zip, and mode "w" truncates one. Inside a ShardedStore a copy opens on first use
    and appends, so unpickling never touches a file."""
    written = ShardedStore(LocalStore(tmp_path / "base"), mounts={"m": ZipStore(tmp_path / "m.zip", mode="w")})
    zarr.create_array(written, name="m/y", shape=(4,), chunks=(2,), dtype="i4")[:] = [1, 2, 3, 4]
    written.close()  # the zip's directory is written on close
    size = (tmp_path / "m.zip").stat().st_size

    copy = pickle.loads(pickle.dumps(written))
    assert (tmp_path / "m.zip").stat().st_size == size  # not truncated
    np.testing.assert_array_equal(zarr.open_array(copy, path="m/y")[:], [1, 2, 3, 4])
    copy.close()

    missing = ShardedStore(LocalStore(tmp_path / "base"), mounts={"gone": ZipStore(tmp_path / "gone.zip", mode="r")})
    clone = pickle.loads(pickle.dumps(missing))  # zarr's own ZipStore raises FileNotFoundError here
    assert not (tmp_path / "gone.zip").exists()
    assert sync(_collect_aiterator(clone.list_prefix("gone"))) == ()
    assert clone == missing


def test_pickled_cache_over_a_zip_mount_does_not_truncate_the_zip(tmp_path: Path) -> None:
    zip_path = tmp_path / "m.zip"
    written = ShardedStore(LocalStore(tmp_path / "base"), mounts={"m": LRUStoreCache(ZipStore(zip_path, mode="w"), max_size=None)})
    zarr.create_array(written, name="m/y", shape=(4,), chunks=(2,), dtype="i4")[:] = [5, 6, 7, 8]
    written.close()
    copy = pickle.loads(pickle.dumps(written))
    np.testing.assert_array_equal(zarr.open_array(copy, path="m/y", mode="r")[:], [5, 6, 7, 8])
    copy.close()
