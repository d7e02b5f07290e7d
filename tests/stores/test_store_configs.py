"""Store configs: JSON round trips that rebuild stores reading the same data, and validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic
import pytest
import zarr
from routing_helpers import MemoryShards
from zarr.abc.store import Store
from zarr.storage import LocalStore, MemoryStore, ZipStore

import zsaver
from zsaver._config import ConfigModel, register_config, registered_config_types
from zsaver.errors import ConfigError
from zsaver.stores import LRUStoreCache, ShardedStore, StoreTable, StoreTemplate, store_to_config

DATA = np.arange(1, 61, dtype="i4").reshape(30, 2)


def _write(store: Store, path: str = "x") -> None:
    zarr.create_array(store, name=path, shape=DATA.shape, chunks=(2, 2), dtype="i4")[:] = DATA


def _json_round_trip(store: Store) -> Store:
    cfg = store_to_config(store)
    text = json.dumps(cfg)
    assert json.loads(text) == cfg
    return zsaver.from_config(json.loads(text))


def test_local_store_round_trip_reads_the_same_data(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "d.zarr")
    _write(store)
    rebuilt = _json_round_trip(store)
    assert store_to_config(store) == {"type": "local", "root": str(tmp_path / "d.zarr"), "read_only": False}
    assert rebuilt == store
    np.testing.assert_array_equal(zarr.open_array(rebuilt, path="x")[:], DATA)


def test_zip_store_written_with_mode_w_is_described_for_reopening_not_truncating(tmp_path: Path) -> None:
    store = ZipStore(tmp_path / "d.zip", mode="w")
    _write(store)
    cfg = store_to_config(store)
    store.close()
    assert cfg == {"type": "zip", "path": str(tmp_path / "d.zip"), "mode": "a", "read_only": False}
    rebuilt = _json_round_trip(ZipStore(tmp_path / "d.zip", mode="r"))
    assert rebuilt.read_only
    np.testing.assert_array_equal(zarr.open_array(rebuilt, path="x", mode="r")[:], DATA)
    appended = zsaver.from_config(cfg)
    np.testing.assert_array_equal(zarr.open_array(appended, path="x")[:], DATA)
    appended.close()


def test_memory_store_config_rebuilds_an_empty_store() -> None:
    store = MemoryStore()
    _write(store)
    rebuilt = _json_round_trip(store)
    assert isinstance(rebuilt, MemoryStore) and not rebuilt._store_dict  # contents are not config


def test_lru_cache_round_trip_reads_the_same_data(tmp_path: Path) -> None:
    store = LRUStoreCache(LocalStore(tmp_path / "d.zarr"), max_size=4096)
    _write(store)
    rebuilt = _json_round_trip(store)
    assert rebuilt == store and rebuilt.max_size == 4096
    np.testing.assert_array_equal(zarr.open_array(rebuilt, path="x")[:], DATA)


def test_sharded_store_round_trip_rebuilds_base_mounts_and_shards(tmp_path: Path) -> None:
    template = StoreTemplate({"type": "local", "root": str(tmp_path / "shards" / "x-{0}")})
    store = ShardedStore(
        LocalStore(tmp_path / "base"),
        mounts={"cold": LRUStoreCache(LocalStore(tmp_path / "cold"), 2**20)},
        array_shards={"x": (1, template), "cold/y": (1, StoreTable({(i,): LocalStore(tmp_path / f"y{i}") for i in range(15)}))},
    )
    zarr.create_group(store, path="cold")
    _write(store)
    _write(store, "cold/y")
    cfg = store_to_config(store)
    root = str(tmp_path / "shards" / "x-{0}")
    template_cfg = {"type": "local", "root": root, "read_only": False}
    assert cfg["array_shards"]["x"] == {"n_dims": 1, "factory": {"type": "store_template", "template": template_cfg}}
    rebuilt = _json_round_trip(store)
    assert rebuilt == store
    for path in ("x", "cold/y"):
        np.testing.assert_array_equal(zarr.open_array(rebuilt, path=path, mode="r")[:], DATA)
    assert (tmp_path / "shards" / "x-14" / "x" / "c" / "14" / "0").exists()


def test_map_shards_without_growth_gives_a_complete_config(tmp_path: Path) -> None:
    store = ShardedStore(MemoryStore(), array_shards={"x": (1, MemoryShards())})
    _write(store)
    counter = iter(range(100))

    def to_disk(sub: Store) -> LocalStore:
        target = LocalStore(tmp_path / f"p{next(counter)}")
        zarr.core.sync.sync(_copy(sub, target))
        return target

    on_disk = store.map_shards(to_disk, grow=False)
    rebuilt = _json_round_trip(on_disk)
    np.testing.assert_array_equal(zarr.open_array(rebuilt, path="x")[:], DATA)
    with pytest.raises(ConfigError, match="grow=False"):
        store_to_config(store.map_shards(to_disk))


async def _copy(source: Store, target: Store) -> None:
    proto = zarr.core.buffer.default_buffer_prototype()
    async for key in source.list():
        await target.set(key, await source.get(key, proto))


def test_plain_function_factory_has_no_config_and_the_error_names_the_array() -> None:
    store = ShardedStore(MemoryStore(), array_shards={"arr": (1, lambda index: MemoryStore())})
    with pytest.raises(ConfigError, match=r"array_shards\['arr'\]\.factory: cannot describe"):
        store.to_config()


def test_unknown_store_type_cannot_be_described() -> None:
    class Odd(MemoryStore):
        pass

    assert store_to_config(Odd()) == {"type": "memory", "read_only": False}  # subclasses use the parent's
    with pytest.raises(ConfigError, match="needs a zarr Store, got int"):
        store_to_config(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"type": "local"}, "local.root"),
        ({"type": "local", "root": "d", "colour": "red"}, "local.colour"),
        ({"type": "zip", "path": "a.zip", "mode": "rw"}, "zip.mode"),
        ({"type": "lru_cache", "store": {"type": "memory"}, "max_size": -5}, "lru_cache.max_size"),
        ({"type": "lru_cache", "store": {"type": "local"}, "max_size": 1}, "lru_cache.store.local.root"),
        ({"type": "sharded", "base": {"type": "memory"}, "array_shards": {"x": {"n_dims": 0, "factory": {"type": "store_table"}}}}, "sharded.array_shards.x.n_dims"),
        ({"type": "sharded", "base": {"type": "memory"}, "mounts": {"m": {"type": "zip"}}}, "sharded.mounts.m.zip.path"),
        ({"type": "store_template", "template": {"type": "nope"}}, "store_template.template"),
        ({"type": "nope"}, "does not match any of the expected tags"),
        ({"root": "d"}, "Unable to extract tag using discriminator 'type'"),
    ],
)
def test_bad_config_raises_a_validation_error_naming_the_field(cfg: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        zsaver.from_config(cfg)
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_nested_config_builds_nothing(tmp_path: Path) -> None:
    cfg = {"type": "sharded", "base": {"type": "local", "root": str(tmp_path / "b")}, "mounts": {"m": {"type": "zip"}}}
    with pytest.raises(pydantic.ValidationError):
        zsaver.from_config(cfg)
    assert not list(tmp_path.iterdir())


def test_from_config_needs_a_mapping() -> None:
    with pytest.raises(TypeError, match="mapping with a 'type' key, got str"):
        zsaver.from_config('{"type": "memory"}')  # type: ignore[arg-type]


def test_template_with_a_bad_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match="bad placeholder"):
        StoreTemplate({"type": "local", "root": "x-{shard}"})


class _PointConfig(ConfigModel):
    type: Literal["test_point"] = "test_point"
    x: int
    store: zsaver._config.NestedConfig


def test_a_new_layer_registers_its_config_in_a_few_lines() -> None:
    register_config(_PointConfig, build=lambda c: (c.x, zsaver.from_config(c.store)))
    x, store = zsaver.from_config({"type": "test_point", "x": 3, "store": {"type": "memory"}})
    assert x == 3 and isinstance(store, MemoryStore)
    assert "test_point" in registered_config_types()

    class Other(ConfigModel):
        type: Literal["test_point"] = "test_point"

    with pytest.raises(ConfigError, match="already registered"):
        register_config(Other, build=lambda c: None)


def test_an_incomplete_model_is_refused_and_the_registry_keeps_working() -> None:
    class Broken(ConfigModel):
        type: Literal["test_broken"] = "test_broken"
        child: UndefinedThing  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ConfigError, match="Broken is not fully defined"):
        register_config(Broken, build=lambda c: None)
    assert "test_broken" not in registered_config_types()
    assert isinstance(zsaver.from_config({"type": "memory"}), MemoryStore)
