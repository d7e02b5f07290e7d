"""zarr's StoreTests for ShardedStore, over memory stores and over real directories.

The fixture store mounts ``a/b`` on its own store and shards array ``foo`` along its
first chunk dimension, so the generic tests' keys (``foo/c/1``, ``foo/0/0``,
``a/b/zarr.json``...) really travel through the routing.

Nothing is skipped: ShardedStore also implements zarr's optional synchronous protocol
(``get_sync``, ``set_sync``, ``delete_sync``), over components with or without it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from routing_helpers import MemoryShards
from zarr.abc.store import Store
from zarr.core.buffer import Buffer, cpu
from zarr.storage import LocalStore, MemoryStore, ZipStore
from zarr.testing.store import StoreTests

from zsaver.stores import ShardedStore, StoreTemplate

_SHARDED_KEY = re.compile(r"foo/(?:c/)?(\d+)(?:/\d+)*")


def _locate(store: ShardedStore, key: str) -> tuple[Store, str]:
    """Where the fixture's layout puts ``key``, worked out independently of ShardedStore._route."""
    if key.startswith("a/b/"):
        return store.mounts["a/b"], key.removeprefix("a/b/")
    match = _SHARDED_KEY.fullmatch(key)
    if match:
        return store.array_shards["foo"].factory((int(match[1]),)), key
    return store.base, key


class TestShardedStoreInMemory(StoreTests[ShardedStore, cpu.Buffer]):
    store_cls = ShardedStore
    buffer_cls = cpu.Buffer

    async def set(self, store: ShardedStore, key: str, value: Buffer) -> None:
        target, inner = _locate(store, key)
        target._store_dict[inner] = value  # type: ignore[attr-defined]

    async def get(self, store: ShardedStore, key: str) -> Buffer:
        target, inner = _locate(store, key)
        return target._store_dict[inner]  # type: ignore[attr-defined]

    @pytest.fixture
    def store_kwargs(self) -> dict[str, Any]:
        return {
            "base": MemoryStore(),
            "mounts": {"a/b": MemoryStore()},
            "array_shards": {"foo": (1, MemoryShards())},
        }

    def test_store_repr(self, store: ShardedStore) -> None:
        assert repr(store).startswith("ShardedStore(base=MemoryStore(")
        assert "'a/b'" in repr(store) and "'foo': 1" in repr(store)

    def test_store_supports_writes(self, store: ShardedStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: ShardedStore) -> None:
        assert store.supports_listing

    async def test_sharded_keys_reach_their_shard_store(self, store: ShardedStore) -> None:
        await store.set("foo/c/7/0", self.buffer_cls.from_bytes(b"x"))
        factory = store.array_shards["foo"].factory
        assert list(factory.stores) == [(7,)]  # type: ignore[attr-defined]
        assert "foo/c/7/0" in factory.stores[(7,)]._store_dict  # type: ignore[attr-defined]
        assert not store.base._store_dict  # type: ignore[attr-defined]


class TestShardedStoreOnDisk(StoreTests[ShardedStore, cpu.Buffer]):
    store_cls = ShardedStore
    buffer_cls = cpu.Buffer

    def _path(self, store: ShardedStore, key: str) -> Path:
        target, inner = _locate(store, key)
        assert isinstance(target, LocalStore)
        return target.root / inner

    async def set(self, store: ShardedStore, key: str, value: Buffer) -> None:
        path = self._path(store, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value.to_bytes())

    async def get(self, store: ShardedStore, key: str) -> Buffer:
        return self.buffer_cls.from_bytes(self._path(store, key).read_bytes())

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        template = StoreTemplate({"type": "local", "root": str(tmp_path / "shard-{index}")})
        return {
            "base": LocalStore(tmp_path / "base"),
            "mounts": {"a/b": LocalStore(tmp_path / "mounted")},
            "array_shards": {"foo": (1, template)},
        }

    def test_store_repr(self, store: ShardedStore) -> None:
        assert str(store) == f"sharded://{store.base}"

    def test_store_supports_writes(self, store: ShardedStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: ShardedStore) -> None:
        assert store.supports_listing


def test_sync_methods_route_to_components_with_and_without_them(tmp_path: Path) -> None:
    """A mount without zarr's synchronous protocol (ZipStore) is reached through zarr's loop."""
    zip_store = ZipStore(tmp_path / "m.zip", mode="w")
    assert not hasattr(zip_store, "set_sync")
    store = ShardedStore(base=MemoryStore(), mounts={"m": zip_store},
                         array_shards={"foo": (1, MemoryShards())})
    value = cpu.Buffer.from_bytes(b"payload")
    for key in ("m/x/zarr.json", "foo/c/3/0", "top/zarr.json"):
        store.set_sync(key, value)
        assert store.get_sync(key).to_bytes() == b"payload"
    assert zip_store._zf.read("x/zarr.json") == b"payload"  # type: ignore[union-attr]
    assert "foo/c/3/0" in store.array_shards["foo"].factory.stores[(3,)]._store_dict  # type: ignore[attr-defined]
    store.delete_sync("foo/c/3/0")
    assert store.get_sync("foo/c/3/0") is None
    with pytest.raises(ValueError):
        store.with_read_only(True).set_sync("top/zarr.json", value)
    zip_store.close()
