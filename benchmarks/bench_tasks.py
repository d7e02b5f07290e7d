"""TaskManager overhead and parallel speed-up, against the loops people write by hand.

1. 100,000 trivial items (each a (16,) float32 row), serial, save_interval=1,000,
   into a ZarrSaver on a LocalStore, against a hand-written loop (list append,
   one np.stack, one zarr write). Target: TaskManager >= 0.5x the loop's items/s.
2. CPU-bound items (about 2 ms of numpy each) with executor="processes" against
   executor="serial". Target: speed-up >= 0.85 x the number of cores.

Run: python benchmarks/bench_tasks.py [--repeats N] [--only trivial] [--pairs N]

``--pairs N`` times the loop and the TaskManager run alternately N times and
prints each pair's ratio: on a noisy machine the two then see the same
conditions, where medians of separate blocks of runs may not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the serial baseline must stay on one core

import concurrent.futures as cf

import numpy as np
import zarr

from zsaver import Saver, TaskManager, ZarrSaver

N_TRIVIAL = 100_000
ROW_CHUNK = 8192
CPU_ITEMS = 600


def trivial_row(i: int) -> np.ndarray:
    return np.full(16, i, dtype=np.float32)


def cpu_row(i: int) -> np.ndarray:
    """About 2 ms of numpy work, no BLAS (so it uses one core)."""
    x = np.random.default_rng(i).random(24_000)
    for _ in range(3):
        x = np.sort(np.sin(x) + x)
    return x[:16].astype(np.float32)


def hand_loop(root: Path) -> None:
    rows = []
    for i in range(N_TRIVIAL):
        rows.append(trivial_row(i))
    data = np.stack(rows)
    arr = zarr.create_array(zarr.storage.LocalStore(root), name="result", shape=data.shape,
                            chunks=(ROW_CHUNK, 16), dtype=data.dtype)
    arr[:] = data


def task_manager_serial(root: Path) -> None:
    saver = ZarrSaver(zarr.storage.LocalStore(root), "result", chunks=ROW_CHUNK)
    TaskManager(trivial_row).submit_tasks(range(N_TRIVIAL), saver, save_interval=1_000, progress=False)


class MemorySaver(Saver):
    """Keeps nothing: isolates the runner's own cost from the saver's."""

    def __init__(self) -> None:
        self.n_rows = 0

    def save(self, data, indices=None, **kwargs):  # type: ignore[no-untyped-def]
        self.n_rows += len(data)

    def __len__(self) -> int:
        return self.n_rows


def task_manager_memory(_: Path) -> None:
    TaskManager(trivial_row).submit_tasks(range(N_TRIVIAL), MemorySaver(), save_interval=1_000, progress=False)


def saver_checkpoints_alone(root: Path) -> None:
    """What 100 checkpoints cost the saver by itself: save 1,000 rows, flush, write a record."""
    rows = np.stack([trivial_row(i) for i in range(1_000)])
    saver = ZarrSaver(zarr.storage.LocalStore(root), "result", chunks=ROW_CHUNK)
    with saver:
        for i in range(N_TRIVIAL // 1_000):
            saver.save(rows)
            saver.flush()
            saver.write_record("tasks", {"items_done": i})


def pool_map(_: Path) -> None:
    """The peer: concurrent.futures' own map, results only, nothing saved."""
    with cf.ProcessPoolExecutor() as pool:
        list(pool.map(cpu_row, range(CPU_ITEMS), chunksize=max(1, CPU_ITEMS // (4 * (os.cpu_count() or 1)))))


def cpu_run(executor: str, root: Path) -> None:
    saver = ZarrSaver(zarr.storage.LocalStore(root), "result", chunks=256)
    TaskManager(cpu_row, executor=executor).submit_tasks(range(CPU_ITEMS), saver, save_interval=100,
                                                         progress=False)


def median_seconds(fn: Callable[[Path], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            os.sync()  # start each run with no dirty pages left by the previous one
            t0 = time.perf_counter()
            fn(Path(tmp) / "store")
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired_ratios(pairs: int) -> None:
    """Loop and TaskManager run alternately; each pair's ratio, then their median."""
    ratios = []
    print("\n| pair | hand loop s | TaskManager + ZarrSaver s | vs loop |")
    print("|---:|---:|---:|---:|")
    for i in range(pairs):
        loop_s = median_seconds(hand_loop, 1)
        tm_s = median_seconds(task_manager_serial, 1)
        ratios.append(loop_s / tm_s)
        print(f"| {i + 1} | {loop_s:.3f} | {tm_s:.3f} | {ratios[-1]:.2f}x |")
    print(f"\nmedian of {pairs} pair ratios: {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


def check_equal() -> None:
    """Both ways must write the same dataset, or the comparison means nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        hand_loop(Path(tmp) / "a")
        task_manager_serial(Path(tmp) / "b")
        a = zarr.open_array(zarr.storage.LocalStore(Path(tmp) / "a"), path="result")[:]
        b = zarr.open_array(zarr.storage.LocalStore(Path(tmp) / "b"), path="result")[:]
        assert np.array_equal(a, b), "TaskManager and the hand loop wrote different data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["trivial"], help="run only the trivial-items table")
    parser.add_argument("--pairs", type=int, default=0,
                        help="only time N alternating (loop, TaskManager) pairs")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    check_equal()
    if args.pairs:
        paired_ratios(args.pairs)
        return

    loop_s = median_seconds(hand_loop, args.repeats)
    tm_s = median_seconds(task_manager_serial, args.repeats)
    mem_s = median_seconds(task_manager_memory, args.repeats)
    ckpt_s = median_seconds(saver_checkpoints_alone, args.repeats)
    ratio = loop_s / tm_s
    print(f"\n## Trivial items: {N_TRIVIAL:,} rows of (16,) float32, serial, save_interval=1,000 "
          f"(median of {args.repeats})\n")
    print("| run | seconds | items/s | vs loop |")
    print("|---|---:|---:|---:|")
    print(f"| hand loop (append, np.stack, one zarr write) | {loop_s:.3f} | {N_TRIVIAL / loop_s:,.0f} | 1.00x |")
    print(f"| TaskManager + ZarrSaver (100 checkpoints) | {tm_s:.3f} | {N_TRIVIAL / tm_s:,.0f} | {ratio:.2f}x |")
    print(f"| TaskManager + in-memory Saver (runner overhead only) | {mem_s:.3f} | "
          f"{N_TRIVIAL / mem_s:,.0f} | {loop_s / mem_s:.2f}x |")
    print(f"| ZarrSaver alone: 100 x (save 1,000 rows, flush, write_record) | {ckpt_s:.3f} | - | - |")
    print(f"\ntarget >= 0.50x: {'met' if ratio >= 0.5 else 'NOT met'}")

    if args.only == "trivial":
        return
    cpu_repeats = max(1, args.repeats // 2 + 1)
    per_item = median_seconds(lambda _: [cpu_row(i) for i in range(20)], 3) / 20
    serial_s = median_seconds(lambda root: cpu_run("serial", root), cpu_repeats)
    procs_s = median_seconds(lambda root: cpu_run("processes", root), cpu_repeats)
    peer_s = median_seconds(pool_map, cpu_repeats)
    speedup = serial_s / procs_s
    print(f"\n## CPU-bound items: {CPU_ITEMS} items of {per_item * 1e3:.1f} ms numpy each, "
          f"{cores} cores (median of {cpu_repeats})\n")
    print("| executor | seconds | items/s | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| serial | {serial_s:.3f} | {CPU_ITEMS / serial_s:,.0f} | 1.00x |")
    print(f"| processes ({cores} workers) | {procs_s:.3f} | {CPU_ITEMS / procs_s:,.0f} | {speedup:.2f}x |")
    print(f"| peer: ProcessPoolExecutor.map, nothing saved | {peer_s:.3f} | {CPU_ITEMS / peer_s:,.0f} | "
          f"{serial_s / peer_s:.2f}x |")
    target = 0.85 * cores
    print(f"\ntarget >= {target:.2f}x (0.85 x {cores} cores): {'met' if speedup >= target else 'NOT met'}")


if __name__ == "__main__":
    main()
