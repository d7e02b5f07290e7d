"""ZarrSaver (the saver layer) works unchanged on both shard stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from zsaver.savers import ZarrSaver


def test_zarrsaver_appends_then_consolidates_into_shards(store_cls: type, tmp_path: Path) -> None:
    store = store_cls(tmp_path / "s", chunks_per_shard=4)
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((7, 3)).astype("f4") for _ in range(40)]
    with ZarrSaver(store, "runs/result", chunks=(10, 3)) as saver:
        for block in blocks:
            saver.save(block)
        saver.consolidate()
    expected = np.concatenate(blocks)
    np.testing.assert_array_equal(zarr.open_array(store_cls(tmp_path / "s"),
                                                  path="runs/result")[:], expected)
    chunk_files = [p for p in (tmp_path / "s" / "runs" / "result").rglob("*")
                   if p.is_file() and not p.name.startswith((".", "zarr.json"))]
    assert chunk_files and all(p.suffix == store._container.suffix for p in chunk_files), chunk_files
    # the whole tree: shards, metadata documents, the marker and one lock file for every
    # lock the saver and the store took (dataset, chunk stripes, consolidation, swaps)
    everything = sorted(str(p.relative_to(tmp_path / "s")) for p in (tmp_path / "s").rglob("*")
                        if p.is_file())
    shards = [f"runs/result/shard-{i}.0{store._container.suffix}" for i in range(7)]
    assert everything == sorted([".zsaver-store.json", ".zsaver.lock", "runs/result/zarr.json",
                                 "runs/zarr.json", "zarr.json", *shards])
    assert (tmp_path / "s" / ".zsaver.lock").stat().st_size == 0


def test_zarrsaver_update_on_consolidated_shards(store_cls: type, tmp_path: Path) -> None:
    store = store_cls(tmp_path)
    with ZarrSaver(store, "x", chunks=(5, 2)) as saver:
        saver.save(np.zeros((20, 2)))
    store.consolidate()
    with ZarrSaver(store, "x", approach="update") as saver:
        saver.save(np.ones((3, 2)), indices=[1, 7, 19])
    expected = np.zeros((20, 2))
    expected[[1, 7, 19]] = 1
    np.testing.assert_array_equal(zarr.open_array(store, path="x")[:], expected)
    store.consolidate()
    np.testing.assert_array_equal(zarr.open_array(store_cls(tmp_path), path="x")[:], expected)
