"""H5ShardStore and ZipShardStore configs: JSON round trips that read and write the same data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
import zarr

import zsaver
from zsaver.stores import H5ShardStore, ShardedStore, StoreTemplate, ZipShardStore, store_to_config

DATA = np.arange(1, 61, dtype="i4").reshape(30, 2)


def _json_round_trip(store: Any) -> Any:
    text = json.dumps(store_to_config(store))
    return zsaver.from_config(json.loads(text))


def test_shard_store_round_trip_reads_shards_and_loose_chunks(
    tmp_path: Path, store_cls: type
) -> None:
    store = store_cls(tmp_path / "s", chunks_per_shard=(4, None), max_open_shards=3)
    zarr.create_array(store, name="x", shape=DATA.shape, chunks=(2, 2), dtype="i4")[:] = DATA
    store.consolidate()
    zarr.open_array(store, path="x")[28:] = -DATA[28:]  # a loose chunk next to the shards
    cfg = store_to_config(store)
    prefix = "h5" if store_cls is H5ShardStore else "zip"
    assert cfg["type"] == f"{prefix}_shard"
    assert (cfg["chunks_per_shard"], cfg["max_open_shards"]) == ([4, None], 3)
    rebuilt = _json_round_trip(store)
    assert type(rebuilt) is store_cls and rebuilt == store
    expected = np.concatenate([DATA[:28], -DATA[28:]])
    np.testing.assert_array_equal(zarr.open_array(rebuilt, path="x")[:], expected)
    assert any(p.suffix in (".h5", ".zip") for p in (tmp_path / "s" / "x").rglob("*"))


def test_write_direct_store_rebuilt_from_its_config_writes_into_shards(
    tmp_path: Path, store_cls: type
) -> None:
    store = store_cls(tmp_path / "s", chunks_per_shard=8, write_direct=True)
    zarr.create_array(store, name="x", shape=DATA.shape, chunks=(2, 2), dtype="i4")
    rebuilt = _json_round_trip(store)
    assert rebuilt.write_direct and rebuilt.chunks_per_shard == 8
    zarr.open_array(rebuilt, path="x")[:] = DATA
    rebuilt.flush()
    written = sorted(p.name for p in (tmp_path / "s" / "x").rglob("*") if p.is_file())
    suffix = ".h5" if store_cls is H5ShardStore else ".zip"
    # write_direct put every chunk straight into a shard: no loose chunk files
    assert written == [f"shard-0.0{suffix}", f"shard-1.0{suffix}", "zarr.json"]
    np.testing.assert_array_equal(zarr.open_array(store_cls(tmp_path / "s"), path="x")[:], DATA)


def test_nested_layout_store_round_trips_and_keeps_its_layout(tmp_path: Path) -> None:
    store = H5ShardStore(tmp_path / "n", layout="nested", consolidate_depth=2)
    zarr.create_array(store, name="x", shape=DATA.shape, chunks=(2, 2), dtype="i4", zarr_format=2)[
        :
    ] = DATA
    store.consolidate()
    cfg = store_to_config(store)
    assert (cfg["layout"], cfg["consolidate_depth"], cfg["chunks_per_shard"]) == ("nested", 2, None)
    rebuilt = _json_round_trip(store)
    assert rebuilt == store
    np.testing.assert_array_equal(zarr.open_array(rebuilt, path="x")[:], DATA)
    zarr.open_array(rebuilt, path="x")[0] = [-1, -1]
    rebuilt.consolidate()
    assert zarr.open_array(store, path="x")[0].tolist() == [-1, -1]


def test_read_only_shard_store_round_trips_read_only(tmp_path: Path, store_cls: type) -> None:
    zarr.create_array(
        store_cls(tmp_path / "s"), name="x", shape=DATA.shape, chunks=(2, 2), dtype="i4"
    )[:] = DATA
    rebuilt = _json_round_trip(store_cls(tmp_path / "s", read_only=True))
    assert rebuilt.read_only
    np.testing.assert_array_equal(zarr.open_array(rebuilt, path="x", mode="r")[:], DATA)


def test_sharded_store_of_shard_stores_round_trips(tmp_path: Path) -> None:
    template = StoreTemplate(
        {"type": "zip_shard", "root": str(tmp_path / "part-{0}"), "chunks_per_shard": 2}
    )
    store = ShardedStore(H5ShardStore(tmp_path / "base"), array_shards={"x": (1, template)})
    zarr.create_array(store, name="x", shape=DATA.shape, chunks=(2, 2), dtype="i4")[:] = DATA
    rebuilt = _json_round_trip(store)
    assert rebuilt == store
    np.testing.assert_array_equal(zarr.open_array(rebuilt, path="x")[:], DATA)
    assert isinstance(template((3,)), ZipShardStore) and (tmp_path / "part-14" / "x").is_dir()


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"type": "h5_shard"}, "h5_shard.root"),
        ({"type": "zip_shard", "root": "d", "max_open_shards": 0}, "zip_shard.max_open_shards"),
        (
            {"type": "zip_shard", "root": "d", "chunks_per_shard": [2, 0]},
            "zip_shard.chunks_per_shard",
        ),
        ({"type": "zip_shard", "root": "d", "layout": "nested"}, "zip_shard.layout"),
        ({"type": "h5_shard", "root": "d", "layout": "flat"}, "h5_shard.layout"),
        ({"type": "h5_shard", "root": "d", "layout": "nested"}, "needs consolidate_depth"),
        (
            {"type": "h5_shard", "root": "d", "consolidate_depth": 2},
            "applies only to layout='nested'",
        ),
    ],
)
def test_bad_shard_store_config_names_the_field_and_creates_nothing(
    cfg: dict[str, Any], field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pydantic.ValidationError) as info:
        zsaver.from_config(cfg)
    assert field in str(info.value)
    assert not list(tmp_path.iterdir())
