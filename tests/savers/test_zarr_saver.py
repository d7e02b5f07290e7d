"""ZarrSaver specifics: store forms, creation options, chunk I/O counts, records."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.core.buffer.cpu import Buffer

from zsaver import ZarrSaver
from zsaver.errors import ApproachError, DatasetSpecError, SaverOptionError, ShapeMismatchError


class CountingStore(zarr.storage.WrapperStore[Any]):
    """Counts reads and writes per key (to prove chunks are touched once)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.gets: Counter[str] = Counter()
        self.sets: Counter[str] = Counter()

    async def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self.gets[key] += 1
        return await self._store.get(key, *args, **kwargs)

    async def set(self, key: str, value: Any) -> None:
        self.sets[key] += 1
        await self._store.set(key, value)


def chunk_keys(counter: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in counter.items() if "/c/" in k})


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zip appends, never rewrites
@pytest.mark.parametrize("form", ["path", "str", "local", "memory", "zip", "group"])
def test_every_store_form_with_nested_dataset_name(tmp_path: Path, form: str) -> None:
    data = np.arange(12.0).reshape(4, 3)
    if form in ("path", "str"):
        store: Any = tmp_path / "s" if form == "path" else str(tmp_path / "s")
        opened = lambda: zarr.open_array(tmp_path / "s", path="a/b/c", mode="r")  # noqa: E731
    elif form == "local":
        store = zarr.storage.LocalStore(tmp_path / "s")
        opened = lambda: zarr.open_array(store, path="a/b/c", mode="r")  # noqa: E731
    elif form == "memory":
        store = zarr.storage.MemoryStore()
        opened = lambda: zarr.open_array(store, path="a/b/c", mode="r")  # noqa: E731
    elif form == "zip":
        store = zarr.storage.ZipStore(tmp_path / "s.zip", mode="w")
        opened = lambda: zarr.open_array(store, path="a/b/c")  # noqa: E731
    else:
        root = zarr.open_group(tmp_path / "s", mode="w")
        store = root.create_group("a")
        opened = lambda: zarr.open_array(tmp_path / "s", path="a/b/c", mode="r")  # noqa: E731
    name = "b/c" if form == "group" else "a/b/c"
    with ZarrSaver(store, name) as s:
        s.save(data[:2])
        s.save(data[2:])
    np.testing.assert_array_equal(opened()[...], data)
    if form == "zip":
        store.close()
    # the implied groups exist and are real zarr groups
    if form in ("path", "str", "group"):
        assert isinstance(zarr.open_group(tmp_path / "s", mode="r")["a/b"], zarr.Group)


@pytest.mark.parametrize("approach", ["Append", " overwrite ", "UPDATE"])
def test_approach_is_case_and_space_insensitive(tmp_path: Path, approach: str) -> None:
    assert ZarrSaver(tmp_path, approach=approach).approach == approach.strip().lower()


def test_wrong_approach_lists_the_three_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'append', 'overwrite', 'update'") as info:
        ZarrSaver(tmp_path, approach="replace")
    assert isinstance(info.value, ApproachError)
    assert not any(tmp_path.iterdir())


def test_unknown_option_is_refused_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="chunk_size") as info:
        ZarrSaver(tmp_path, chunk_size=10)
    assert isinstance(info.value, SaverOptionError)


def test_creation_options_are_honoured_in_the_metadata(tmp_path: Path) -> None:
    from zarr.codecs import BloscCodec

    s = ZarrSaver(
        tmp_path,
        "x",
        dtype="i4",
        chunks=(8, 2),
        shards=(32, 2),
        compressors=BloscCodec(cname="lz4", clevel=3),
        fill_value=-1,
        attributes={"units": "m"},
        dimension_names=("item", "col"),
    )
    s.save(np.ones((5, 2), dtype=np.int8))
    arr = zarr.open_array(tmp_path, path="x", mode="r")
    assert arr.dtype == np.int32 and arr.chunks == (8, 2) and arr.shards == (32, 2)
    assert arr.fill_value == -1 and arr.attrs["units"] == "m"
    meta = json.loads((tmp_path / "x" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["item", "col"]
    sharding = meta["codecs"][0]
    assert sharding["name"] == "sharding_indexed"
    assert any(
        c["name"] == "blosc" and c["configuration"]["cname"] == "lz4"
        for c in sharding["configuration"]["codecs"]
    )
    assert s.row_chunk == 32  # writes are aligned on shards


def test_no_compression_and_zarr_format_2(tmp_path: Path) -> None:
    s = ZarrSaver(tmp_path, "v2", zarr_format=2, compressors=None, chunks=4)
    s.save(np.arange(10.0).reshape(5, 2))
    s.save(np.arange(4.0).reshape(2, 2))
    meta = json.loads((tmp_path / "v2" / ".zarray").read_text())
    assert meta["compressor"] is None and meta["chunks"] == [4, 2] and meta["shape"] == [7, 2]
    assert zarr.open_array(tmp_path, path="v2", mode="r").shape == (7, 2)


def test_numpy_index_arrays_work(tmp_path: Path) -> None:
    s = ZarrSaver(tmp_path, "x")
    s.save(np.zeros((5, 2)))
    ZarrSaver(tmp_path, "x", approach="update").save(np.ones((2, 2)), indices=np.array([4, 1]))
    ZarrSaver(tmp_path, "x", approach="update").save(np.full((1, 2), 2.0), indices=np.array([0]))
    np.testing.assert_array_equal(zarr.open_array(tmp_path, path="x")[:, 0], [2, 1, 0, 0, 1])


def test_each_touched_chunk_is_read_and_written_at_most_once_per_flush() -> None:
    store = CountingStore(zarr.storage.MemoryStore())
    ZarrSaver(store, "x", chunks=10, compressors=None).save(np.zeros((100, 2)))
    store.gets.clear()
    store.sets.clear()
    rng = np.random.default_rng(0)
    with ZarrSaver(store, "x", approach="update") as s:
        for i in rng.integers(0, 95, 300).tolist():
            s.save(np.full(2, i + 1.0), indices=i)
        s.save(np.full((5, 2), 7.0), indices=slice(95, 100))
    reads, writes = chunk_keys(store.gets), chunk_keys(store.sets)
    assert writes and max(writes.values()) == 1 and max(reads.values(), default=0) <= 1
    assert "x/c/9/0" not in reads  # fully overwritten: written without reading


def test_appends_write_each_chunk_once_and_metadata_rarely() -> None:
    store = CountingStore(zarr.storage.MemoryStore())
    with ZarrSaver(store, "x", chunks=100, compressors=None) as s:
        for i in range(200):
            s.save(np.full((7, 4), i, dtype="f4"))
    writes = chunk_keys(store.sets)
    assert len(writes) == 14 and max(writes.values()) == 1
    assert store.sets["x/zarr.json"] <= 3
    out = zarr.open_array(store, path="x")[...]
    np.testing.assert_array_equal(out[::7, 0], np.arange(200))


def test_consolidate_writes_consolidated_metadata_and_calls_store(tmp_path: Path) -> None:
    class ConsolidatingStore(zarr.storage.LocalStore):
        consolidated = 0

        def consolidate(self) -> None:
            type(self).consolidated += 1

    store = ConsolidatingStore(tmp_path)
    with ZarrSaver(store, "g/x") as s:
        s.save(np.zeros((3, 2)))
        s.consolidate()
    assert ConsolidatingStore.consolidated == 1
    group = zarr.open_group(tmp_path, mode="r", use_consolidated=True)
    assert group.metadata.consolidated_metadata is not None
    assert group["g/x"].shape == (3, 2)


def test_record_survives_a_torn_write_of_its_newer_slot() -> None:
    store = zarr.storage.MemoryStore()
    s = ZarrSaver(store, "x")
    s.write_record("state", {"n": 1})
    s.write_record("state", {"n": 2})
    # simulate a crash half-way through the next write: garbage in the older slot
    slots = sorted(k for k in store._store_dict if "records/state" in k)
    older = min(slots, key=lambda k: json.loads(store._store_dict[k].to_bytes())["seq"])
    store._store_dict[older] = Buffer.from_bytes(b'{"seq": 9, "sha256": "00", "doc": "{\\"n\\": 3')
    assert s.read_record("state") == {"n": 2}
    s.write_record("state", {"n": 3})
    assert s.read_record("state") == {"n": 3}


@pytest.mark.parametrize("form", ["local", "memory", "local-v2"])
def test_open_session_sees_rows_another_saver_appended_between_its_flushes(
    tmp_path: Path, form: str
) -> None:
    """The session reuses its array handle only while the stored metadata is unchanged."""
    store: Any = zarr.storage.MemoryStore() if form == "memory" else zarr.storage.LocalStore(tmp_path)
    opts: dict[str, Any] = {"chunks": 4, "zarr_format": 2} if form == "local-v2" else {"chunks": 4}
    a, b = ZarrSaver(store, "d", **opts), ZarrSaver(store, "d", **opts)
    with a:
        a.save(np.full((3, 2), 1))
        a.flush()
        with b:
            b.save(np.full((6, 2), 2))
        a.save(np.full((5, 2), 3))
        a.flush()
        a.write_record("progress", {"n": 14})
    expected = np.concatenate([np.full((3, 2), 1), np.full((6, 2), 2), np.full((5, 2), 3)])
    np.testing.assert_array_equal(zarr.open_array(store, path="d", mode="r")[:], expected)
    assert a.read_record("progress") == {"n": 14}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_resized_handle_and_its_metadata_documents_are_what_zarr_makes(zarr_format: int) -> None:
    """The saver's shortcuts (copy with a new shape, patch "shape" in the JSON) match zarr's own."""
    from zsaver.savers._zarr import _MetadataEncoder, _with_shape

    arr = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(5, 3), chunks=(4, 3), dtype="f4",
        fill_value=-1.5, attributes={"a": [1, 2]}, zarr_format=zarr_format,
    )
    grown = _with_shape(arr, (1234, 3))
    expected = arr.async_array.metadata.update_shape((1234, 3))
    assert grown.async_array.metadata == expected
    assert grown.shape == (1234, 3)
    want = {k: v.to_bytes() for k, v in expected.to_buffer_dict(zarr.core.buffer.default_buffer_prototype()).items()}
    assert _MetadataEncoder(arr).docs(grown) == want
    assert arr.shape == (5, 3)  # the original handle is untouched


@pytest.mark.parametrize("compressed", [True, False])
def test_update_into_the_partial_last_chunk_survives_the_next_append_of_an_open_session(
    tmp_path: Path, compressed: bool
) -> None:
    """The appender keeps its last partial chunk in memory; another writer's change must win."""
    opts: dict[str, Any] = {"chunks": 8} if compressed else {"chunks": 8, "compressors": None}
    store = zarr.storage.LocalStore(tmp_path)
    with ZarrSaver(store, "d", **opts) as a:
        a.save(np.full((3, 2), 1))
        a.flush()  # rows 0..2 of chunk 0, kept in memory by ``a``
        ZarrSaver(store, "d", approach="update").save(np.full(2, 7), indices=1)
        a.save(np.full((2, 2), 2))
        a.flush()  # chunk 0 again: must not restore row 1 from memory
        a.save(np.full((4, 2), 3))
    expected = np.concatenate([np.full((3, 2), 1), np.full((2, 2), 2), np.full((4, 2), 3)])
    expected[1] = 7
    np.testing.assert_array_equal(zarr.open_array(store, path="d", mode="r")[:], expected)


@pytest.mark.parametrize("approach", ["append", "overwrite", "update"])
def test_a_group_at_the_dataset_path_is_refused_and_kept(tmp_path, approach) -> None:
    from zsaver.errors import ShapeMismatchError

    root = tmp_path / "g.zarr"
    ZarrSaver(str(root), "runs/a").save(np.ones((3, 2)))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    saver = ZarrSaver(str(root), "runs", approach=approach, shape=(2, 2))
    with pytest.raises(ShapeMismatchError, match="found a zarr group there"):
        saver.save(np.zeros((2, 2)), indices=[0, 1] if approach == "update" else None)
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before


def test_updates_store_chunks_that_equal_the_fill_value(tmp_path) -> None:
    # zarr by default deletes such chunks; a saver's rows are data, and `zsaver verify`
    # counts a missing chunk as lost.
    store = zarr.storage.LocalStore(tmp_path)
    with ZarrSaver(store, "u", approach="update", shape=(8, 2), chunks=(4, 2), dtype="f8") as saver:
        saver.save(np.zeros((8, 2)), indices=np.arange(8))
    assert sorted(p.name for p in (tmp_path / "u" / "c").iterdir()) == ["0", "1"]


@pytest.mark.parametrize("grow", ["update", "reserve"])
def test_growing_keeps_a_saved_chunk_that_equals_the_fill_value(tmp_path, grow: str) -> None:
    ZarrSaver(tmp_path, "a", chunks=10).save(np.zeros(3))  # saved rows equal to the fill value
    if grow == "reserve":
        ZarrSaver(tmp_path, "a").reserve(25, (), "f8")
    else:
        ZarrSaver(tmp_path, "a", "update", allow_resize=True).save(np.array([5.0]), indices=[15])
    assert (tmp_path / "a" / "c" / "0").is_file()
    assert zarr.open_array(zarr.storage.LocalStore(tmp_path), path="a")[:].shape == (25 if grow == "reserve" else 16,)


def test_a_zarr_2_array_without_a_fill_value_grows(tmp_path) -> None:
    store = zarr.storage.LocalStore(tmp_path)
    zarr.create_array(store, name="v2", shape=(4, 2), chunks=(2, 2), dtype="i4", zarr_format=2,
                      fill_value=None)[:] = 7
    saver = ZarrSaver(store, "v2", approach="update", allow_resize=True)
    saver.save(np.ones((1, 2), dtype="i4"), indices=[6])
    saver.reserve(10, (2,), "i4")
    data = zarr.open_array(store, path="v2")[:]
    assert data.shape == (10, 2) and (data[:4] == 7).all() and (data[6] == 1).all()
    assert (data[[4, 5, 7, 8, 9]] == 0).all()


def test_an_update_at_one_index_of_a_1d_dataset_takes_a_scalar() -> None:
    saver = ZarrSaver(zarr.storage.MemoryStore(), "x", approach="update", shape=(5,), dtype="f8")
    saver.save(3.5, indices=2)
    saver.save(np.float64(1.5), indices=np.int64(4))
    np.testing.assert_array_equal(saver.array[:], [0, 0, 3.5, 0, 1.5])
    with pytest.raises(ShapeMismatchError, match="zero-dimensional"):
        saver.save(3.5, indices=[2])  # an index list takes rows with a row axis


def test_a_dataset_below_an_array_is_refused_with_the_array_named(tmp_path) -> None:
    store = zarr.storage.LocalStore(tmp_path)
    ZarrSaver(store, "x").save(np.ones((2, 2)))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ShapeMismatchError, match="'x' is an array, so nothing can be stored below it"):
        ZarrSaver(store, "x/y").save(np.ones((2, 2)))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # not even a lock file


def test_a_dataset_in_a_zarr_2_hierarchy_is_zarr_2_and_keeps_the_groups_visible(tmp_path) -> None:
    root = zarr.open_group(zarr.storage.LocalStore(tmp_path), mode="w", zarr_format=2)
    root.attrs["experiment"] = "E1"
    runs = root.create_group("runs")
    runs.attrs["owner"] = "me"
    runs.create_array("old", shape=(3,), dtype="f8")[:] = [1, 2, 3]
    ZarrSaver(tmp_path, "runs/new").save(np.ones(3))
    group = zarr.open_group(zarr.storage.LocalStore(tmp_path), path="runs", mode="r")
    assert dict(group.attrs) == {"owner": "me"} and sorted(group.array_keys()) == ["new", "old"]
    assert zarr.open_group(zarr.storage.LocalStore(tmp_path), mode="r").attrs["experiment"] == "E1"
    assert not (tmp_path / "zarr.json").exists()


def test_asking_for_the_other_zarr_format_than_the_hierarchy_is_refused_before_writing(tmp_path) -> None:
    zarr.open_group(zarr.storage.LocalStore(tmp_path), mode="w", zarr_format=3).create_group("g")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".zsaver" not in str(p))
    with pytest.raises(DatasetSpecError, match="zarr_format=2 asked for, but the groups above it are zarr 3"):
        ZarrSaver(tmp_path, "g/a", zarr_format=2).save(np.ones(3))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".zsaver" not in str(p)) == before


def test_chunks_auto_means_the_default_chunking(tmp_path) -> None:
    saver = ZarrSaver(tmp_path, "a", chunks="auto")
    saver.save(np.ones((4, 3)))
    assert saver.row_chunk == (1 << 20) // (3 * 8)  # about 1 MiB of rows, as without the option


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_overwrite_on_a_store_without_deletes_is_refused_by_name_and_keeps_the_data(tmp_path) -> None:
    store = zarr.storage.ZipStore(tmp_path / "z.zip", mode="a")
    ZarrSaver(store, "a").save(np.arange(3.0))
    with pytest.raises(DatasetSpecError, match="ZipStore cannot delete keys"):
        ZarrSaver(store, "a", "overwrite").save(np.array([1.0]))
    ZarrSaver(store, "new", "overwrite").save(np.array([1.0]))  # nothing to replace: fine
    np.testing.assert_array_equal(zarr.open_array(store, path="a")[:], np.arange(3.0))
    store.close()


@pytest.mark.parametrize(
    "shards, row_shape, dtype, chunks",
    [
        ((1000, 8), (8,), "f4", (1000, 8)),  # the 1 MiB default (32768 rows) holds the shard
        ((1000, 1000), (1000,), "f8", (125, 1000)),  # 131 rows by default: 125 divides 1000
        ((997, 1000), (1000,), "f8", (1, 1000)),  # a prime number of rows per shard
        ({"shape": (1000, 1000), "index_location": "start"}, (1000,), "f8", (125, 1000)),
        ((1000, 4), (8,), "f4", (1000, 4)),  # a shard narrower than a row: chunks as narrow
    ],
    ids=["small-rows", "big-rows", "prime", "dict", "narrow-shard"],
)
def test_shards_without_chunks_get_default_chunks_that_divide_them(
    tmp_path: Path, shards: Any, row_shape: tuple[int, ...], dtype: str, chunks: tuple[int, ...]
) -> None:
    # Was always refused: the default chunk (about 1 MiB of rows) did not divide the shard.
    data = np.arange(3 * int(np.prod(row_shape)), dtype=dtype).reshape(3, *row_shape)
    saver = ZarrSaver(tmp_path, "d", shards=shards)
    saver.save(data)
    saver.save(data)
    shard_shape = shards["shape"] if isinstance(shards, dict) else shards
    assert (saver.array.chunks, saver.array.shards) == (chunks, tuple(shard_shape))
    assert saver.row_chunk == shard_shape[0]
    np.testing.assert_array_equal(saver.array[...], np.concatenate([data, data]))


@pytest.mark.filterwarnings("ignore:Automatic shard shape inference is experimental")
def test_auto_shards_are_sized_from_the_shape_at_creation(tmp_path: Path) -> None:
    # zarr sizes "auto" shards from the array's shape when it is made: an appended
    # array starts empty (one chunk per shard), a reserved one has its rows.
    appended = ZarrSaver(tmp_path, "a", chunks=(100, 8), shards="auto")
    appended.save(np.zeros((10, 8), "f4"))
    assert appended.array.shards == (100, 8)
    reserved = ZarrSaver(tmp_path, "r", "update", chunks=(100, 8), shards="auto")
    reserved.reserve(100_000, (8,), "f4")
    assert reserved.array.shards[0] > 100 and reserved.array.shards[0] % 100 == 0
