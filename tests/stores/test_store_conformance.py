"""zarr's own store conformance suite, run against both shard stores.

Every StoreTests test runs. None is skipped by us: the suite's sync-protocol
tests (get_sync/set_sync/delete_sync) apply because both stores implement them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from zarr.core.buffer import Buffer, cpu, default_buffer_prototype
from zarr.testing.store import StoreTests

from zsaver.stores import H5ShardStore, ZipShardStore


class _ShardStoreTests(StoreTests):  # type: ignore[type-arg]
    buffer_cls = cpu.Buffer

    # The suite's helpers must bypass the store's own methods: a value set by the
    # helper is a loose file at the key's path, exactly what the store writes.
    async def set(self, store: Any, key: str, value: Buffer) -> None:
        path = Path(store.root) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value.to_bytes())

    async def get(self, store: Any, key: str) -> Buffer:
        return self.buffer_cls.from_bytes((Path(store.root) / key).read_bytes())

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"root": tmp_path}

    def test_store_repr(self, store: Any) -> None:
        assert repr(store) == f"{self.store_cls.__name__}('file://{Path(store.root).as_posix()}')"

    def test_store_supports_writes(self, store: Any) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: Any) -> None:
        assert store.supports_listing

    def test_pickled_store_is_small_and_reopens(self, store: Any) -> None:
        import pickle

        store.set_sync("a/b", self.buffer_cls.from_bytes(b"x"))
        blob = pickle.dumps(store)
        assert len(blob) < 600
        clone = pickle.loads(blob)
        assert clone.get_sync("a/b", prototype=default_buffer_prototype()).to_bytes() == b"x"


class TestH5ShardStoreConformance(_ShardStoreTests):
    store_cls = H5ShardStore


class TestZipShardStoreConformance(_ShardStoreTests):
    store_cls = ZipShardStore


class TestH5ShardStoreWriteDirectConformance(_ShardStoreTests):
    """The suite again with write_direct=True (its keys are not chunk keys of an array,
    so they stay plain files; chunk behaviour is covered in test_shard_stores.py)."""

    store_cls = H5ShardStore

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"root": tmp_path, "write_direct": True}
