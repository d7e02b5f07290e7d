"""Config models for stores: zarr's LocalStore, ZipStore and MemoryStore, and zsaver's own.

Importing this module registers them with :func:`zsaver.from_config`.

Example:
    >>> store = from_config({"type": "lru_cache", "max_size": 2**20,
    ...                      "store": {"type": "local", "root": "data.zarr"}})
    >>> store_to_config(store)["store"]["root"]
    'data.zarr'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from zarr.abc.store import Store
from zarr.storage import LocalStore, MemoryStore, ZipStore

from zsaver._config import ConfigModel, NestedConfig, from_config, register_config, to_config
from zsaver.errors import ConfigError
from zsaver.stores._h5_store import H5ShardStore
from zsaver.stores._lru_cache import LRUStoreCache
from zsaver.stores._shard_factories import StoreTable, StoreTemplate
from zsaver.stores._sharded_store import ShardedStore
from zsaver.stores._zip_store import ZipShardStore

__all__ = [
    "H5ShardStoreConfig",
    "LRUStoreCacheConfig",
    "LocalStoreConfig",
    "MemoryStoreConfig",
    "ShardedStoreConfig",
    "StoreTableConfig",
    "StoreTemplateConfig",
    "ZipShardStoreConfig",
    "ZipStoreConfig",
    "store_to_config",
]


class LocalStoreConfig(ConfigModel):
    """zarr.storage.LocalStore: a directory."""

    type: Literal["local"] = "local"
    root: str = Field(min_length=1)
    read_only: bool = False


class ZipStoreConfig(ConfigModel):
    """zarr.storage.ZipStore: one zip file. ``read_only`` defaults to ``mode == "r"``."""

    type: Literal["zip"] = "zip"
    path: str = Field(min_length=1)
    mode: Literal["r", "w", "a", "x"] = "r"
    read_only: bool | None = None


class MemoryStoreConfig(ConfigModel):
    """zarr.storage.MemoryStore. Its contents are NOT part of the config: it rebuilds empty."""

    type: Literal["memory"] = "memory"
    read_only: bool = False


class LRUStoreCacheConfig(ConfigModel):
    """zsaver LRUStoreCache in front of a nested store config."""

    type: Literal["lru_cache"] = "lru_cache"
    store: NestedConfig
    max_size: int | None = Field(ge=0)
    read_only: bool = False


class ArrayShardsConfig(BaseModel):
    """How one array of a ShardedStore is split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_dims: int = Field(ge=1)
    factory: NestedConfig


class ShardedStoreConfig(ConfigModel):
    """zsaver ShardedStore: nested configs for the base, each mount and each array's factory."""

    type: Literal["sharded"] = "sharded"
    base: NestedConfig
    mounts: dict[str, NestedConfig] = Field(default_factory=dict)
    array_shards: dict[str, ArrayShardsConfig] = Field(default_factory=dict)
    read_only: bool = False


class StoreTemplateConfig(ConfigModel):
    """Shard factory filling ``{0}``, ``{1}``, ``{index}`` in a store config's strings."""

    type: Literal["store_template"] = "store_template"
    template: NestedConfig


class StoreTableEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    index: list[int] = Field(min_length=1)
    store: NestedConfig


class StoreTableConfig(ConfigModel):
    """Shard factory with an explicit ``index -> store`` table and an optional fallback."""

    type: Literal["store_table"] = "store_table"
    stores: list[StoreTableEntry] = Field(default_factory=list)
    fallback: NestedConfig | None = None


PositiveInt = Annotated[int, Field(ge=1)]


class _ShardStoreConfig(ConfigModel):
    """Constructor arguments shared by the shard stores (see ``ShardedStoreBase``)."""

    root: str = Field(min_length=1)
    # None: whatever the directory's marker records (64 for a new store).
    chunks_per_shard: PositiveInt | list[PositiveInt | None] | None = None
    read_only: bool = False
    write_direct: bool = False
    max_open_shards: PositiveInt = 128
    max_buffer_bytes: int = Field(default=256 * 2**20, ge=0)

    def store_kwargs(self) -> dict[str, Any]:
        kwargs = self.model_dump(exclude={"type", "root"})
        if isinstance(self.chunks_per_shard, list):
            kwargs["chunks_per_shard"] = tuple(self.chunks_per_shard)
        return kwargs


class H5ShardStoreConfig(_ShardStoreConfig):
    """zsaver H5ShardStore; ``layout="nested"`` needs ``consolidate_depth >= 2``."""

    type: Literal["h5_shard"] = "h5_shard"
    layout: Literal["sharded", "nested"] = "sharded"
    consolidate_depth: int | None = Field(default=None, ge=2)

    @model_validator(mode="after")
    def _layout_options_agree(self) -> Self:
        # The same rules as H5ShardStore's constructor, checked before anything is built.
        if self.layout == "nested":
            if self.consolidate_depth is None:
                raise ValueError("layout='nested' needs consolidate_depth (an int >= 2)")
            if self.chunks_per_shard is not None:
                raise ValueError("chunks_per_shard does not apply to layout='nested'")
        elif self.consolidate_depth is not None:
            raise ValueError("consolidate_depth applies only to layout='nested'")
        return self


class ZipShardStoreConfig(_ShardStoreConfig):
    """zsaver ZipShardStore."""

    type: Literal["zip_shard"] = "zip_shard"


def _describe_local(store: LocalStore) -> dict[str, Any]:
    return {"type": "local", "root": str(store.root), "read_only": store.read_only}


def _describe_zip(store: ZipStore) -> dict[str, Any]:
    # A config says how to reopen the store: reopening "w" or "x" would truncate the file
    # or fail on it, so a store created with them is described with "a".
    mode = "a" if store._zmode in ("w", "x") else store._zmode
    return {"type": "zip", "path": str(store.path), "mode": mode, "read_only": store.read_only}


def _describe_memory(store: MemoryStore) -> dict[str, Any]:
    return {"type": "memory", "read_only": store.read_only}


def _build_sharded(cfg: ShardedStoreConfig) -> ShardedStore:
    return ShardedStore(
        from_config(cfg.base),
        {path: from_config(mount) for path, mount in cfg.mounts.items()},
        {path: (spec.n_dims, from_config(spec.factory)) for path, spec in cfg.array_shards.items()},
        read_only=cfg.read_only,
    )


def _build_table(cfg: StoreTableConfig) -> StoreTable:
    fallback = None if cfg.fallback is None else from_config(cfg.fallback)
    return StoreTable({tuple(e.index): from_config(e.store) for e in cfg.stores}, fallback=fallback)


register_config(
    LocalStoreConfig,
    build=lambda c: LocalStore(c.root, read_only=c.read_only),
    describes=LocalStore,
    describe=_describe_local,
)
register_config(
    ZipStoreConfig,
    build=lambda c: ZipStore(c.path, mode=c.mode, read_only=c.read_only),
    describes=ZipStore,
    describe=_describe_zip,
)
register_config(
    MemoryStoreConfig,
    build=lambda c: MemoryStore(read_only=c.read_only),
    describes=MemoryStore,
    describe=_describe_memory,
)
register_config(
    LRUStoreCacheConfig,
    build=lambda c: LRUStoreCache(from_config(c.store), c.max_size, read_only=c.read_only),
)
register_config(
    H5ShardStoreConfig, build=lambda c: H5ShardStore(c.root, **c.store_kwargs())
)
register_config(
    ZipShardStoreConfig, build=lambda c: ZipShardStore(c.root, **c.store_kwargs())
)
register_config(ShardedStoreConfig, build=_build_sharded)
register_config(StoreTemplateConfig, build=lambda c: StoreTemplate(c.template))
register_config(StoreTableConfig, build=_build_table)


def store_to_config(store: Store) -> dict[str, Any]:
    """The JSON-ready config of a zarr store (LocalStore, ZipStore, MemoryStore) or a zsaver store.

    Raises :class:`~zsaver.errors.ConfigError` for a store type nothing describes.
    """
    if not isinstance(store, Store):
        raise ConfigError(f"store_to_config needs a zarr Store, got {type(store).__name__}")
    return to_config(store)
