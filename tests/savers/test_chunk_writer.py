"""The synchronous chunk writer stores exactly the bytes zarr stores, or stands aside."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zarr

from zsaver.savers import ZarrSaver
from zsaver.savers._chunk_writer import ChunkWriter

CASES: list[tuple[str, dict[str, Any], tuple[int, ...], tuple[int, ...]]] = [
    ("f4", {}, (10, 3), (4, 3)),  # zarr's default codecs (zstd)
    ("<f8", {"compressors": None}, (9,), (4,)),
    (">i2", {"compressors": zarr.codecs.GzipCodec(level=5)}, (7, 2, 2), (3, 2, 2)),
    ("u1", {"compressors": zarr.codecs.BloscCodec(cname="lz4", clevel=3)}, (11, 5), (5, 5)),
    ("i4", {"fill_value": -7, "compressors": [zarr.codecs.ZstdCodec(level=1), zarr.codecs.Crc32cCodec()]}, (6, 4), (4, 4)),
    ("bool", {}, (5, 2), (2, 2)),
    ("c8", {"fill_value": 1 + 2j}, (5,), (2,)),
]


def _chunk_bytes(store: zarr.storage.MemoryStore, prefix: str) -> dict[str, bytes]:
    """Chunk key (below the array) -> stored bytes."""
    keys = [k for k in store._store_dict if k.startswith(prefix + "/c/")]
    return {k[len(prefix) :]: store._store_dict[k].to_bytes() for k in keys}


@pytest.mark.parametrize(("dtype", "options", "shape", "chunks"), CASES)
def test_same_bytes_as_zarr(dtype: str, options: dict[str, Any], shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    data = (rng.random(shape) * 100).astype(dtype)
    store = zarr.storage.MemoryStore()
    by_zarr = zarr.create_array(store, name="a", shape=shape, chunks=chunks, dtype=dtype, **options)
    by_zarr[:] = data
    ours = zarr.create_array(store, name="b", shape=shape, chunks=chunks, dtype=dtype, **options)
    writer = ChunkWriter.for_array(ours)
    assert writer is not None
    for first in range(0, shape[0], 2 * chunks[0]):
        writer.write(first, data[first : first + 2 * chunks[0]])
    np.testing.assert_array_equal(ours[:], data)
    assert _chunk_bytes(store, "b") == _chunk_bytes(store, "a")
    assert len(_chunk_bytes(store, "a")) == -(-shape[0] // chunks[0])


@pytest.mark.parametrize(
    ("why", "make"),
    [
        ("sharded", lambda s: zarr.create_array(s, shape=(8, 2), chunks=(2, 2), shards=(4, 2), dtype="f4")),
        ("zarr 2", lambda s: zarr.create_array(s, shape=(8, 2), chunks=(2, 2), dtype="f4", zarr_format=2)),
        ("array-to-array codec", lambda s: zarr.create_array(
            s, shape=(8, 2), chunks=(2, 2), dtype="f4", filters=[zarr.codecs.TransposeCodec(order=(1, 0))])),
        ("several chunks per row block", lambda s: zarr.create_array(s, shape=(8, 4), chunks=(2, 2), dtype="f4")),
        ("variable-length strings", lambda s: zarr.create_array(s, shape=(8,), chunks=(2,), dtype=str)),
    ],
)
def test_stands_aside(why: str, make: Any) -> None:
    assert ChunkWriter.for_array(make(zarr.storage.MemoryStore())) is None, why


def test_stands_aside_for_stores_without_sync_writes(tmp_path: Any) -> None:
    with zarr.storage.ZipStore(tmp_path / "a.zip", mode="w") as store:
        arr = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="f4")
        assert ChunkWriter.for_array(arr) is None


def test_fits_only_whole_chunks_from_a_boundary() -> None:
    arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(100,), chunks=(10,), dtype="f4")
    writer = ChunkWriter.for_array(arr)
    assert writer is not None
    assert writer.fits(10, 20) and writer.fits(20, 3)
    assert not writer.fits(5, 3)  # starts inside a chunk: zarr must merge it
    assert not writer.fits(0, 21)  # more chunks than the fast path takes
    assert not writer.fits(0, 0)


def test_saver_appends_match_zarrs_bytes_with_flushes_between(tmp_path: Any) -> None:
    """Checkpointed appends (partial last chunk rewritten each time) end with zarr's bytes."""
    rng = np.random.default_rng(1)
    data = rng.random((1000, 3)).astype("f4")
    store = zarr.storage.LocalStore(tmp_path / "s")
    with ZarrSaver(store, "ours", chunks=64) as saver:
        for i in range(0, len(data), 37):
            saver.save(data[i : i + 37])
            saver.flush()
    reference = zarr.create_array(store, name="ref", shape=data.shape, chunks=(64, 3), dtype="f4")
    reference[:] = data
    for index in range(-(-len(data) // 64)):
        ours = (tmp_path / "s" / "ours" / "c" / str(index) / "0").read_bytes()
        ref = (tmp_path / "s" / "ref" / "c" / str(index) / "0").read_bytes()
        assert ours == ref, f"chunk {index} differs"
