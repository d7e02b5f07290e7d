"""ShardedStore and LRUStoreCache travel to dask worker processes (pickled) and write real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

import zsaver
from zsaver.stores import LRUStoreCache, ShardedStore, StoreTemplate

distributed = pytest.importorskip("distributed")


def _write_rows(store: ShardedStore, start: int, stop: int) -> int:
    arr = zarr.open_array(store, path="x")
    arr[start:stop] = np.arange(start, stop, dtype="i8")[:, None] * np.ones((1, 3), dtype="i8")
    return stop - start


def _read_sum(config: dict) -> int:
    return int(zarr.open_array(zsaver.from_config(config), path="x", mode="r")[:].sum())


def test_worker_processes_write_through_pickled_and_config_rebuilt_stores(tmp_path: Path) -> None:
    template = StoreTemplate({"type": "local", "root": str(tmp_path / "shards" / "{0}")})
    store = ShardedStore(
        LRUStoreCache(LocalStore(tmp_path / "base"), 2**20),
        array_shards={"x": (1, template)},
    )
    zarr.create_array(store, name="x", shape=(120, 3), chunks=(4, 3), dtype="i8", fill_value=-1)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        futures = [client.submit(_write_rows, store, i, i + 40, pure=False) for i in range(0, 120, 40)]
        assert sum(client.gather(futures)) == 120
        total = client.submit(_read_sum, store.to_config(), pure=False).result()
    expected = np.arange(120)[:, None] * np.ones((1, 3), dtype="i8")
    assert total == expected.sum()
    np.testing.assert_array_equal(zarr.open_array(store, path="x")[:], expected)
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == sorted(str(i) for i in range(30))
