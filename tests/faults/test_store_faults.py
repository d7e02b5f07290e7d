"""SIGKILL during consolidate() and convert(), and concurrent writers + a consolidator.

Each kill is followed by a reopen, a full comparison with what an uninterrupted
run holds, a rerun, and a second comparison.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from nested_trees import write_nested_tree
from zarr.core.buffer import default_buffer_prototype

from zsaver.stores import H5ShardStore, ZipShardStore, convert, open_store

WORKER = str(Path(__file__).with_name("_store_worker.py"))
CLASSES = {"h5": H5ShardStore, "zip": ZipShardStore}
KILLS_PER_KIND = 10  # x2 kinds = 20 kills per scenario


def _spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, WORKER, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _run_and_kill(delay: float, *args: str) -> bool:
    """Run a worker job, SIGKILL it after ``delay`` s; True if it was killed mid-way."""
    proc = _spawn(*args)
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return killed


def _time_job(*args: str) -> float:
    """Seconds an uninterrupted run of a worker job takes, from 'go' to 'done'."""
    proc = _spawn(*args)
    assert proc.stdin is not None and proc.stdout is not None
    start = time.perf_counter()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"
    elapsed = time.perf_counter() - start
    assert proc.wait() == 0
    return elapsed


def _build(root: Path, kind: str, seed: int) -> np.ndarray:
    """A store with shards, loose overwrites and tombstones; returns the expected content."""
    rng = np.random.default_rng(seed)
    store = CLASSES[kind](root, chunks_per_shard=2)
    arr = zarr.create_array(store, name="g/x", shape=(60, 8), chunks=(2, 4), dtype="f8",
                            fill_value=-1.0)
    arr[:40] = rng.standard_normal((40, 8))
    store.consolidate()
    arr[30:60] = rng.standard_normal((30, 8))  # overwrites in-shard chunks and adds new ones
    for key in ("g/x/c/1/0", "g/x/c/3/1", "g/x/c/20/0"):
        store.delete_sync(key)  # two tombstones, one loose-only delete
    return arr[:]


def _loose_and_tombstones(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and (
        p.name.endswith("zsaver-deleted") or "/c/" in str(p.relative_to(root)) or
        p.name.endswith("zsaver-partial"))]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["h5", "zip"])
def test_sigkill_during_consolidate_loses_nothing_and_rerun_finishes(
    kind: str, tmp_path: Path
) -> None:
    probe = tmp_path / "probe"
    _build(probe, kind, 0)
    budget = _time_job("consolidate", kind, str(probe), "1")
    killed = 0
    for trial in range(KILLS_PER_KIND):
        root = tmp_path / f"t{trial}"
        expected = _build(root, kind, trial)
        workers = "1" if trial % 2 else "3"  # serial and threaded consolidation
        killed += _run_and_kill(random.uniform(0, budget), "consolidate", kind, str(root), workers)
        np.testing.assert_array_equal(zarr.open_array(CLASSES[kind](root), path="g/x")[:],
                                      expected)
        CLASSES[kind](root).consolidate()
        np.testing.assert_array_equal(zarr.open_array(CLASSES[kind](root), path="g/x")[:],
                                      expected)
        assert _loose_and_tombstones(root) == []
    assert killed >= KILLS_PER_KIND // 3  # most kills landed mid-job, not after it


_CONVERSIONS = [("plain", "h5"), ("plain", "zip"), ("h5", "zip"), ("zip", "h5"), ("h5", "plain"),
                ("zip", "plain")]


def _build_for_convert(root: Path, source: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1000, (40, 6, 3)).astype("i4")
    plain = zarr.open_group(root, mode="w")  # a zarr 3 LocalStore tree
    plain.create_array("a/b", shape=data.shape, chunks=(2, 3, 3), dtype="i4")[:] = data
    z2 = zarr.open_group(root / "v2", mode="w", zarr_format=2)
    z2.create_array("y", shape=(30,), chunks=(2,), dtype="i2", chunk_key_encoding={
        "name": "v2", "separator": "/"})[:] = np.arange(30)
    if source != "plain":
        convert(root, source, chunks_per_shard=3)
    return data


@pytest.mark.slow
def test_sigkill_during_convert_loses_nothing_and_rerun_finishes(tmp_path: Path) -> None:
    budgets: dict[tuple[str, str], float] = {}
    for source, target in _CONVERSIONS:  # how long each uninterrupted conversion takes
        probe = tmp_path / f"probe-{source}-{target}"
        _build_for_convert(probe, source, 0)
        budgets[source, target] = _time_job("convert", target, str(probe))
    killed = 0
    for trial in range(2 * KILLS_PER_KIND):
        source, target = _CONVERSIONS[trial % len(_CONVERSIONS)]
        root = tmp_path / f"t{trial}"
        data = _build_for_convert(root, source, trial)
        delay = random.uniform(0.0, budgets[source, target])
        killed += _run_and_kill(delay, "convert", target, str(root))
        convert(root, target)  # the rerun finishes the job
        store = open_store(root)
        assert type(store).__name__ == {"plain": "LocalStore", "h5": "H5ShardStore",
                                        "zip": "ZipShardStore"}[target]
        np.testing.assert_array_equal(zarr.open_array(store, path="a/b")[:], data)
        np.testing.assert_array_equal(
            zarr.open_array(store, path="v2/y")[:], np.arange(30))
        suffixes = {p.suffix for p in root.rglob("*") if p.is_file()}
        assert ".h5" not in suffixes if target != "h5" else ".zip" not in suffixes
        leftovers = [p for p in root.rglob("*") if p.name.endswith(("zsaver-partial",
                                                                    "zsaver-deleted"))]
        assert leftovers == [], (source, target)
    assert killed >= KILLS_PER_KIND  # at least half the kills landed mid-conversion


@pytest.mark.slow
def test_sigkill_during_convert_of_a_nested_tree_loses_nothing_and_rerun_finishes(
    tmp_path: Path,
) -> None:
    data = np.random.default_rng(0).integers(0, 1000, (40, 6, 4), dtype="i4")
    targets = ["plain", "h5", "zip"]
    budgets = {}
    for target in targets:
        probe = tmp_path / f"probe-{target}"
        write_nested_tree(probe, "arr", data, (2, 2, 2), 3)
        budgets[target] = _time_job("convert", target, str(probe), "3")
    killed = 0
    for trial in range(9):
        target = targets[trial % 3]
        root = tmp_path / f"t{trial}"
        write_nested_tree(root, "arr", data, (2, 2, 2), 3)
        killed += _run_and_kill(random.uniform(0.0, budgets[target]), "convert", target, str(root), "3")
        convert(root, target, consolidate_depth=3)  # the rerun finishes the job
        store = open_store(root)
        np.testing.assert_array_equal(zarr.open_array(store, path="arr")[:], data)
        files = [p for p in root.rglob("*") if p.is_file()]
        assert not [p for p in files if p.name[0].isdigit() and p.suffix == ".h5"], target
        assert not [p for p in files if p.name.endswith(("zsaver-partial", "zsaver-deleted"))]
        assert not (root / ".zsaver-convert.json").exists()
    assert killed >= 4  # about half the kills landed mid-conversion


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["h5", "zip"])
def test_concurrent_writers_and_two_consolidators_lose_nothing(kind: str, tmp_path: Path) -> None:
    store = CLASSES[kind](tmp_path, chunks_per_shard=4)
    zarr.create_array(store, name="x", shape=(48 * 10,), chunks=(10,), dtype="i8", fill_value=0)
    writers, versions = 8, 6  # 8 writers: the count that lost about 90% of chunks in zarr 2's stores
    consolidators = [_spawn("consolidate-loop", kind, str(tmp_path)) for _ in range(2)]
    procs = [_spawn("write", kind, str(tmp_path), str(i), str(writers), str(versions))
             for i in range(writers)]
    for proc in [*consolidators, *procs]:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    for consolidator in consolidators:
        os.kill(consolidator.pid, signal.SIGKILL)
        consolidator.wait()
    rewrites = [int(n) for n in Path(f"{tmp_path}.rewrites").read_text().split()]
    assert sum(rewrites) > 0  # consolidation really ran while the writers wrote
    expected = np.repeat(versions * 1000 + np.arange(48), 10)
    np.testing.assert_array_equal(zarr.open_array(store, path="x")[:], expected)
    CLASSES[kind](tmp_path).consolidate()
    np.testing.assert_array_equal(zarr.open_array(CLASSES[kind](tmp_path), path="x")[:], expected)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == sorted(
        ["zarr.json"] + [f"shard-{i}{store._container.suffix}" for i in range(12)])


@pytest.mark.parametrize("kind", ["h5", "zip"])
def test_deleting_an_array_waits_for_a_consolidation_of_it_in_another_process(kind: str, tmp_path: Path) -> None:
    # Another process has read x's chunks and is writing x's shard when x is
    # deleted and created anew. The shard must not come back into the new array.
    store = CLASSES[kind](tmp_path, chunks_per_shard=8)
    zarr.create_array(store, name="x", shape=(16,), chunks=(2,), dtype="i4", fill_value=0)[:] = 7
    proc = _spawn("slow-consolidate", kind, str(tmp_path), "1.0")
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "writing"
    fresh = zarr.create_array(CLASSES[kind](tmp_path), name="x", shape=(16,), chunks=(2,), dtype="i4",
                              fill_value=0, overwrite=True)  # delete_dir("x"), then new metadata
    fresh[:4] = 1
    assert proc.stdout.readline().strip() == "done" and proc.wait() == 0
    expected = np.array([1] * 4 + [0] * 12, dtype="i4")
    np.testing.assert_array_equal(zarr.open_array(CLASSES[kind](tmp_path), path="x")[:], expected)
    CLASSES[kind](tmp_path).consolidate()
    np.testing.assert_array_equal(zarr.open_array(CLASSES[kind](tmp_path), path="x")[:], expected)


@pytest.mark.parametrize("key", ["x/c/1", "y/zarr.json"])
@pytest.mark.parametrize("kind", ["h5", "zip"])
def test_set_if_not_exists_has_one_winner_among_processes(kind: str, key: str, tmp_path: Path) -> None:
    store = CLASSES[kind](tmp_path)
    zarr.create_array(store, name="x", shape=(4,), chunks=(1,), dtype="i4")
    procs = [_spawn("set-if-not-exists", kind, str(tmp_path), key, f"process {i}") for i in range(4)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    seen = []
    for proc in procs:
        assert proc.stdout is not None
        seen.append(proc.stdout.readline().strip())
        assert proc.wait(timeout=60) == 0
    final = store.get_sync(key, prototype=default_buffer_prototype())
    assert final is not None
    assert seen == [final.to_bytes().decode()] * 4  # no process overwrote what another read


@pytest.mark.parametrize("kind", ["h5", "zip"])
def test_write_direct_keeps_everything_before_the_last_flush_after_sigkill(
    kind: str, tmp_path: Path
) -> None:
    store = CLASSES[kind](tmp_path, chunks_per_shard=4)
    zarr.create_array(store, name="x", shape=(20,), chunks=(1,), dtype="i4", fill_value=0)
    proc = _spawn("write-direct", kind, str(tmp_path), "9")
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "flushed"
    assert proc.stdout.readline().strip() == "unflushed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    got = zarr.open_array(CLASSES[kind](tmp_path), path="x")[:]
    assert got[:10].tolist() == list(range(1, 11))  # flushed: all there
    assert got[10:].tolist() == [0] * 10  # buffered only: lost with the process
    loose = [p for p in (tmp_path / "x").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert all(p.suffix == CLASSES[kind](tmp_path)._container.suffix for p in loose)


@pytest.mark.parametrize("kind", ["h5", "zip"])
def test_reader_sees_shard_consolidated_by_another_process(kind: str, tmp_path: Path) -> None:
    store = CLASSES[kind](tmp_path, chunks_per_shard=8)
    arr = zarr.create_array(store, name="g/x", shape=(8,), chunks=(1,), dtype="i4")
    arr[:] = 1
    store.consolidate()
    reader = zarr.open_array(CLASSES[kind](tmp_path), path="g/x")
    assert reader[:].tolist() == [1] * 8  # the reader now holds an open shard handle
    arr[:] = 2
    _time_job("consolidate", kind, str(tmp_path), "1")  # another process rewrites the shard
    assert [p.name for p in (tmp_path / "g" / "x").iterdir() if p.name != "zarr.json"] == [
        f"shard-0{store._container.suffix}"]
    assert reader[:].tolist() == [2] * 8
