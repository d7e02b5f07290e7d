"""consolidate() options (threads, progress bar, dask client) and convert() round trips."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from zsaver.errors import StoreConfigError
from zsaver.stores import H5ShardStore, ZipShardStore, convert, open_store


def _filled(store: object, n: int = 40) -> np.ndarray:
    data = np.arange(n * 3, dtype="i4").reshape(n, 3)
    zarr.create_array(store, name="x", shape=data.shape, chunks=(2, 3), dtype="i4")[:] = data
    return data


def test_consolidate_with_threads_and_progress_bar(
    store_cls: type, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = store_cls(tmp_path, chunks_per_shard=2)
    data = _filled(store)
    assert store.consolidate(workers=4, progress=True) == 10
    assert "consolidate" in capsys.readouterr().err  # tqdm writes to stderr
    np.testing.assert_array_equal(zarr.open_array(store, path="x")[:], data)


def test_consolidate_on_a_dask_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    store = ZipShardStore(tmp_path, chunks_per_shard=4)
    data = _filled(store)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert store.consolidate(client=client) == 5
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == sorted(
        ["zarr.json"] + [f"shard-{i}.0.zip" for i in range(5)])
    np.testing.assert_array_equal(zarr.open_array(ZipShardStore(tmp_path), path="x")[:], data)


def test_convert_round_trip_plain_h5_zip_plain(tmp_path: Path) -> None:
    data = _filled(zarr.storage.LocalStore(tmp_path))
    z2 = zarr.open_group(tmp_path / "old", mode="w", zarr_format=2)
    z2.create_array("y", shape=(9, 2), chunks=(2, 1), dtype="f4",
                    chunk_key_encoding={"name": "v2", "separator": "/"})[:] = 1.5
    plain_keys = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    for target, cls in [("h5", H5ShardStore), ("zip", ZipShardStore), ("plain", None)]:
        convert(tmp_path, target, chunks_per_shard=8 if target == "h5" else None)
        store = open_store(tmp_path)
        assert type(store) is (cls or zarr.storage.LocalStore)
        np.testing.assert_array_equal(zarr.open_array(store, path="x")[:], data)
        assert (zarr.open_array(store, path="old/y")[:] == 1.5).all()
        assert not (tmp_path / ".zsaver-convert.json").exists()
    # the plain tree again, plus the store's empty lock file (kept: see _remove_bookkeeping)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.is_file()) == sorted([*plain_keys, ".zsaver.lock"])
    assert (tmp_path / ".zsaver.lock").stat().st_size == 0


def test_convert_refuses_a_second_target_while_one_is_unfinished(tmp_path: Path) -> None:
    _filled(zarr.storage.LocalStore(tmp_path))
    (tmp_path / ".zsaver-convert.json").write_text(json.dumps(
        {"from": "plain", "to": "h5", "chunks_per_shard": [64]}))
    with pytest.raises(StoreConfigError, match="to='h5'"):
        convert(tmp_path, "zip")
    with pytest.raises(StoreConfigError, match="middle of a conversion"):
        H5ShardStore(tmp_path)._ensure_open_sync()
    # The command line names the command that finishes it.
    (tmp_path / ".zsaver-store.json").write_text(json.dumps(
        {"zsaver_store": 1, "container": "h5", "layout": "sharded", "chunks_per_shard": [64]}))
    shown = subprocess.run([sys.executable, "-m", "zsaver", "info", str(tmp_path)],
                           capture_output=True, text=True)
    assert shown.returncode != 0
    assert f"from 'plain' to 'h5' that was interrupted; finish it first: zsaver convert {tmp_path} --to h5" \
        in shown.stderr.replace("\n", " ")
    convert(tmp_path, "h5")
    assert isinstance(open_store(tmp_path), H5ShardStore)


def test_convert_rejects_an_unknown_target_before_writing(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="'h5', 'zip', 'plain'"):
        convert(tmp_path, "tar")
    assert list(tmp_path.iterdir()) == []


def test_convert_to_plain_makes_chunk_files_durable_before_deleting_a_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Power loss cannot be simulated here; what can be checked is the order of
    # the system calls: every chunk file, and every directory on its path, is
    # fsynced before the shard that held the chunk is unlinked.
    data = np.arange(24, dtype="i4").reshape(12, 2)
    store = H5ShardStore(tmp_path, chunks_per_shard=2)
    arr = zarr.create_array(store, name="g/x", shape=data.shape, chunks=(2, 2), dtype="i4")
    arr[:] = data
    store.consolidate()
    arr[:2] = data[:2] = -1  # a loose chunk newer than its shard copy: kept, and made durable too
    events: list[tuple[str, str]] = []
    real_fsync, real_unlink = os.fsync, os.unlink

    def fsync(fd: int) -> None:  # a chunk file is fsynced under its temporary name
        events.append(("fsync", re.sub(r"\.[0-9a-f]{32}\.zsaver-partial$", "", os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def unlink(path: str, *args: object, **kwargs: object) -> None:
        events.append(("unlink", os.path.realpath(path)))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)
    convert(tmp_path, "plain")
    monkeypatch.undo()
    root = os.path.realpath(tmp_path)
    shards = [i for i, (kind, path) in enumerate(events) if kind == "unlink" and path.endswith(".h5")]
    assert len(shards) == 3
    synced_before = {path for kind, path in events[: shards[0]] if kind == "fsync"}
    first_chunks = [os.path.join(root, "g", "x", "c", str(i), "0") for i in range(2)]
    needed = set(first_chunks) | {os.path.dirname(c) for c in first_chunks} | {
        os.path.join(root, "g", "x", "c"), os.path.join(root, "g", "x")}
    assert needed <= synced_before, needed - synced_before
    np.testing.assert_array_equal(zarr.open_array(zarr.storage.LocalStore(tmp_path), path="g/x")[:], data)


def test_convert_with_a_dask_client_consolidates_on_the_workers(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    data = _filled(zarr.storage.LocalStore(tmp_path))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        convert(tmp_path, "h5", chunks_per_shard=4, client=client)
    assert not (tmp_path / ".zsaver-convert.json").exists()
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == sorted(
        ["zarr.json"] + [f"shard-{i}.0.h5" for i in range(5)])
    np.testing.assert_array_equal(zarr.open_array(open_store(tmp_path), path="x")[:], data)


def test_a_pickled_store_still_refuses_a_directory_in_mid_conversion(tmp_path: Path) -> None:
    from zsaver.stores._convert import _open

    _filled(zarr.storage.LocalStore(tmp_path))
    (tmp_path / ".zsaver-convert.json").write_text(json.dumps(
        {"from": "plain", "to": "h5", "chunks_per_shard": [64]}))
    converting = _open(tmp_path, "h5", [64])  # the store convert() itself works through
    converting._ensure_open_sync()
    for store in (H5ShardStore(tmp_path), converting):
        with pytest.raises(StoreConfigError, match="middle of a conversion"):
            pickle.loads(pickle.dumps(store))._ensure_open_sync()


def test_open_store_refuses_an_unfinished_conversion_before_its_marker_is_written(tmp_path: Path) -> None:
    # Converting to a shard store writes the journal first, the marker later; converting
    # to plain removes the marker first. In between, the tree looked like a plain one.
    _filled(zarr.storage.LocalStore(tmp_path))
    (tmp_path / ".zsaver-convert.json").write_text(json.dumps(
        {"from": "plain", "to": "zip", "chunks_per_shard": [64]}))
    with pytest.raises(StoreConfigError, match=r"finish it first: zsaver convert .* --to zip"):
        open_store(tmp_path)
    convert(tmp_path, "zip")
    assert isinstance(open_store(tmp_path), ZipShardStore)
