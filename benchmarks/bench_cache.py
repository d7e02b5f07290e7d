"""LRUStoreCache in front of a slow store: time to read a whole array, cold and warm.

The slow store is zarr's LatencyStore (a sleep before every get) over a MemoryStore.
Prints a markdown table of medians over several runs.

    python benchmarks/bench_cache.py [--latency-ms 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import zarr
from zarr.storage import MemoryStore
from zarr.testing.store import LatencyStore

from zsaver.stores import LRUStoreCache


def _time_read(store: object, path: str) -> float:
    arr = zarr.open_array(store, path=path, mode="r")
    start = time.perf_counter()
    arr[...]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=200)
    args = parser.parse_args()

    memory = MemoryStore()
    data = np.random.default_rng(0).random((args.chunks * 1000,))
    zarr.create_array(memory, name="x", shape=data.shape, chunks=(1000,), dtype="f8")[:] = data
    slow = LatencyStore(memory, get_latency=args.latency_ms / 1000)

    uncached, cold, warm = [], [], []
    for _ in range(args.runs):
        uncached.append(_time_read(slow, "x"))
        cache = LRUStoreCache(slow, max_size=2**30)
        cold.append(_time_read(cache, "x"))
        warm.append(_time_read(cache, "x"))
        assert cache.hits >= args.chunks

    base = statistics.median(uncached)
    print(f"\nRead {args.chunks} chunks of 8 kB, get latency {args.latency_ms} ms, median of {args.runs} runs\n")
    print("| store | median s | speed-up vs uncached |")
    print("|---|---:|---:|")
    for name, times in [("LatencyStore (no cache)", uncached), ("LRUStoreCache, cold", cold), ("LRUStoreCache, warm", warm)]:
        median = statistics.median(times)
        print(f"| {name} | {median:.4f} | {base / median:.1f}x |")


if __name__ == "__main__":
    main()
