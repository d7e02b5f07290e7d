"""Append workload into LocalStore, H5ShardStore, ZipShardStore and zarr's sharding codec.

2,000 saves of (100, 64) float32 through ZarrSaver, chunks (1000, 64); each shard
store is consolidated and the consolidation is timed with the writes. Then 1,000
random whole-chunk reads. Prints medians of several runs and ratios; the runs go in
rounds of one run per store, and each round's write ratios are printed too. The
``write_direct`` rows buffer chunks and write them straight into shards at
consolidate() (no loose files at all).

A second table repeats the writes without the saver's staging (each save is an
``arr[a:b] = block`` of 100 rows, the way the sharding codec's partial-shard
rewrites were measured), with fewer saves because the codec is slow there.

    python benchmarks/bench_stores.py [--repeats 3] [--saves 2000] [--reads 1000]
                                      [--unstaged-saves 2000] [--unstaged-repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from zsaver.savers import ZarrSaver
from zsaver.stores import H5ShardStore, ZipShardStore

ROWS, COLS, CHUNK_ROWS = 100, 64, 1000


def _configs() -> dict[str, tuple[Callable[[str], Any], dict[str, Any]]]:
    return {
        "LocalStore": (LocalStore, {}),
        "H5ShardStore": (H5ShardStore, {}),
        "ZipShardStore": (ZipShardStore, {}),
        "H5ShardStore write_direct": (lambda root: H5ShardStore(root, write_direct=True), {}),
        "ZipShardStore write_direct": (lambda root: ZipShardStore(root, write_direct=True), {}),
        "sharding codec": (LocalStore, {"shards": (64 * CHUNK_ROWS, COLS)}),
    }


def _count_files(root: str) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def _run_once(name: str, saves: int, reads: int, seed: int) -> tuple[float, float, int]:
    make_store, extra = _configs()[name]
    root = tempfile.mkdtemp(prefix="zsaver-bench-")
    try:
        store = make_store(root)
        block = np.random.default_rng(seed).standard_normal((ROWS, COLS)).astype("f4")
        os.sync()  # no dirty pages of the previous run to flush during this one
        start = time.perf_counter()
        with ZarrSaver(store, "data", chunks=(CHUNK_ROWS, COLS), dtype="f4", **extra) as saver:
            for _ in range(saves):
                saver.save(block)
        if hasattr(store, "consolidate"):
            store.consolidate()
        write_s = time.perf_counter() - start
        files = _count_files(root)
        arr = zarr.open_array(make_store(root), path="data", mode="r")
        n_chunks = arr.shape[0] // CHUNK_ROWS
        picks = np.random.default_rng(seed + 1).integers(0, n_chunks, reads)
        start = time.perf_counter()
        for i in picks:
            arr[i * CHUNK_ROWS : (i + 1) * CHUNK_ROWS]
        read_s = time.perf_counter() - start
        return saves * ROWS / write_s, reads / read_s, files
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_unstaged(name: str, saves: int) -> float:
    """Rows/s of ``saves`` unbatched 100-row writes (plus consolidation)."""
    make_store, extra = _configs()[name]
    root = tempfile.mkdtemp(prefix="zsaver-bench-")
    try:
        store = make_store(root)
        block = np.random.default_rng(0).standard_normal((ROWS, COLS)).astype("f4")
        arr = zarr.create_array(store, name="data", shape=(saves * ROWS, COLS), dtype="f4",
                                chunks=(CHUNK_ROWS, COLS), **extra)
        os.sync()
        start = time.perf_counter()
        for i in range(saves):
            arr[i * ROWS : (i + 1) * ROWS] = block
        if hasattr(store, "consolidate"):
            store.consolidate()
        return saves * ROWS / (time.perf_counter() - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--saves", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--unstaged-saves", type=int, default=2000)
    parser.add_argument("--unstaged-repeats", type=int, default=1)
    args = parser.parse_args()
    # Rounds, each running every store once: a slow spell of a shared machine then
    # hits all stores alike instead of the ones whose block of runs it overlaps.
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in _configs()}
    for seed in range(args.repeats):
        for name in runs:
            runs[name].append(_run_once(name, args.saves, args.reads, seed))
    results = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                      rs[-1][2]) for name, rs in runs.items()}
    base_w, base_r, _ = results["LocalStore"]
    codec_w = results["sharding codec"][0]
    print(f"append {args.saves} x ({ROWS}, {COLS}) float32, chunks ({CHUNK_ROWS}, {COLS}); "
          f"{args.reads} random chunk reads; medians of {args.repeats} runs\n")
    print("| store | write rows/s | vs LocalStore | vs sharding codec | reads chunks/s "
          "| vs LocalStore | files after |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (w, r, files) in results.items():
        print(f"| {name} | {w:,.0f} | {w / base_w:.2f}x | {w / codec_w:.1f}x | {r:,.0f} "
              f"| {r / base_r:.2f}x | {files} |")
    print("\nwrite rows/s vs LocalStore within each round (min to max):")
    for name, rs in runs.items():
        ratios = [run[0] / base[0] for run, base in zip(rs, runs["LocalStore"], strict=True)]
        print(f"- {name}: {min(ratios):.2f}x to {max(ratios):.2f}x")
    _unstaged_table(args.unstaged_repeats, args.unstaged_saves)


def _unstaged_table(repeats: int, saves: int) -> None:
    rates = {name: statistics.median(_run_unstaged(name, saves) for _ in range(repeats))
             for name in _configs()}
    print(f"\nunstaged: {saves} x arr[a:b] = ({ROWS}, {COLS}) block, no saver staging\n")
    print("| store | write rows/s | vs LocalStore | vs sharding codec |")
    print("|---|---:|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / rates['LocalStore']:.2f}x "
              f"| {rate / rates['sharding codec']:.1f}x |")


if __name__ == "__main__":
    main()
