"""TaskManager overhead and parallel speed-up, against the loops people write by hand.

1. 100,000 trivial items (each a (16,) float32 row), serial, save_interval=1,000,
   into a ZarrSaver on a LocalStore, against a hand-written loop (list append,
   one np.stack, one zarr write of the same array, same chunks). Target:
   TaskManager >= 0.5x the loop's items/s. Timed for two chunk layouts (rows per
   chunk, ``--chunk-rows``): 8,192 rows, where each checkpoint of 1,000 rows
   rewrites the partial last chunk whole (zarr has no partial chunk writes, so
   every chunk is encoded and written about 8 times), and 1,000 rows, where each
   checkpoint writes whole new chunks.
2. CPU-bound items (about 2 ms of numpy each, ``--cpu-items``, 3,000 by default:
   about 6 s of serial work, so that starting the pool and the last checkpoint
   do not decide the ratio) with executor="processes" against
   executor="serial". Target: speed-up >= 0.85 x the number of cores.

Run: python benchmarks/bench_tasks.py [--repeats N] [--only trivial] [--pairs N]
     [--chunk-rows R [R ...]] [--cpu-items N]

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
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the serial baseline must stay on one core

import concurrent.futures as cf

import numpy as np
import zarr

from zsaver import Saver, TaskManager, ZarrSaver

N_TRIVIAL = 100_000
SAVE_INTERVAL = 1_000
CHUNK_ROWS = (8192, SAVE_INTERVAL)  # a chunk rewritten by ~8 checkpoints; a chunk per checkpoint
CPU_ITEMS = 3_000


def trivial_row(i: int) -> np.ndarray:
    return np.full(16, i, dtype=np.float32)


def cpu_row(i: int) -> np.ndarray:
    """About 2 ms of numpy work, no BLAS (so it uses one core)."""
    x = np.random.default_rng(i).random(24_000)
    for _ in range(3):
        x = np.sort(np.sin(x) + x)
    return x[:16].astype(np.float32)


def hand_loop(root: Path, chunk_rows: int = CHUNK_ROWS[0]) -> None:
    rows = []
    for i in range(N_TRIVIAL):
        rows.append(trivial_row(i))
    data = np.stack(rows)
    arr = zarr.create_array(zarr.storage.LocalStore(root), name="result", shape=data.shape,
                            chunks=(chunk_rows, 16), dtype=data.dtype)
    arr[:] = data


def task_manager_serial(root: Path, chunk_rows: int = CHUNK_ROWS[0]) -> None:
    saver = ZarrSaver(zarr.storage.LocalStore(root), "result", chunks=chunk_rows)
    TaskManager(trivial_row).submit_tasks(range(N_TRIVIAL), saver, save_interval=SAVE_INTERVAL,
                                          progress=False)


class MemorySaver(Saver):
    """Keeps nothing: isolates the runner's own cost from the saver's."""

    def __init__(self) -> None:
        self.n_rows = 0

    def save(self, data, indices=None, **kwargs):  # type: ignore[no-untyped-def]
        self.n_rows += len(data)

    def __len__(self) -> int:
        return self.n_rows


def task_manager_memory(_: Path) -> None:
    TaskManager(trivial_row).submit_tasks(range(N_TRIVIAL), MemorySaver(), save_interval=SAVE_INTERVAL,
                                          progress=False)


def saver_checkpoints_alone(root: Path, chunk_rows: int = CHUNK_ROWS[0]) -> None:
    """What 100 checkpoints cost the saver by itself: save 1,000 rows, flush, write a record."""
    rows = np.stack([trivial_row(i) for i in range(SAVE_INTERVAL)])
    saver = ZarrSaver(zarr.storage.LocalStore(root), "result", chunks=chunk_rows)
    with saver:
        for i in range(N_TRIVIAL // SAVE_INTERVAL):
            saver.save(rows)
            saver.flush()
            saver.write_record("tasks", {"items_done": i})


def pool_map(n_items: int) -> None:
    """The peer: concurrent.futures' own map, results only, nothing saved."""
    with cf.ProcessPoolExecutor() as pool:
        list(pool.map(cpu_row, range(n_items), chunksize=max(1, n_items // (4 * (os.cpu_count() or 1)))))


def cpu_run(executor: str, root: Path, n_items: int) -> None:
    saver = ZarrSaver(zarr.storage.LocalStore(root), "result", chunks=256)
    TaskManager(cpu_row, executor=executor).submit_tasks(range(n_items), saver, save_interval=100,
                                                         progress=False)


def median_seconds(fn: Callable[[Path], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            os.sync()  # start each run with no dirty pages left by the previous one
            t0 = time.perf_counter()
            fn(Path(tmp) / "store")
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired_ratios(pairs: int, chunk_rows: int) -> None:
    """Loop and TaskManager run alternately; each pair's ratio, then their median."""
    ratios = []
    print(f"\n### chunks of {chunk_rows:,} rows\n")
    print("| pair | hand loop s | TaskManager + ZarrSaver s | vs loop |")
    print("|---:|---:|---:|---:|")
    for i in range(pairs):
        loop_s = median_seconds(lambda root: hand_loop(root, chunk_rows), 1)
        tm_s = median_seconds(lambda root: task_manager_serial(root, chunk_rows), 1)
        ratios.append(loop_s / tm_s)
        print(f"| {i + 1} | {loop_s:.3f} | {tm_s:.3f} | {ratios[-1]:.2f}x |")
    print(f"\nmedian of {pairs} pair ratios: {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


def check_equal(chunk_rows: int) -> None:
    """Both ways must write the same dataset, or the comparison means nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        hand_loop(Path(tmp) / "a", chunk_rows)
        task_manager_serial(Path(tmp) / "b", chunk_rows)
        a = zarr.open_array(zarr.storage.LocalStore(Path(tmp) / "a"), path="result")
        b = zarr.open_array(zarr.storage.LocalStore(Path(tmp) / "b"), path="result")
        assert a.chunks == b.chunks, "TaskManager and the hand loop chose different chunks"
        assert np.array_equal(a[:], b[:]), "TaskManager and the hand loop wrote different data"


def trivial_table(repeats: int, chunk_rows: tuple[int, ...]) -> None:
    print(f"\n## Trivial items: {N_TRIVIAL:,} rows of (16,) float32, serial, "
          f"save_interval={SAVE_INTERVAL:,} (median of {repeats})\n")
    print("| run | chunk rows | seconds | items/s | vs loop |")
    print("|---|---:|---:|---:|---:|")
    verdicts = []
    for rows in chunk_rows:
        loop_s = median_seconds(partial(hand_loop, chunk_rows=rows), repeats)
        tm_s = median_seconds(partial(task_manager_serial, chunk_rows=rows), repeats)
        ckpt_s = median_seconds(partial(saver_checkpoints_alone, chunk_rows=rows), repeats)
        ratio = loop_s / tm_s
        verdicts.append(f"{rows:,}-row chunks {ratio:.2f}x ({'met' if ratio >= 0.5 else 'NOT met'})")
        print(f"| hand loop (append, np.stack, one zarr write) | {rows:,} | {loop_s:.3f} | "
              f"{N_TRIVIAL / loop_s:,.0f} | 1.00x |")
        print(f"| TaskManager + ZarrSaver ({N_TRIVIAL // SAVE_INTERVAL} checkpoints) | {rows:,} | {tm_s:.3f} | "
              f"{N_TRIVIAL / tm_s:,.0f} | {ratio:.2f}x |")
        print(f"| ZarrSaver alone: {N_TRIVIAL // SAVE_INTERVAL} x (save {SAVE_INTERVAL:,} rows, flush, "
              f"write_record) | {rows:,} | {ckpt_s:.3f} | - | - |")
    mem_s = median_seconds(task_manager_memory, repeats)
    print(f"| TaskManager + in-memory Saver (runner overhead only) | - | {mem_s:.3f} | "
          f"{N_TRIVIAL / mem_s:,.0f} | - |")
    print(f"\ntarget >= 0.50x: {'; '.join(verdicts)}")


def cpu_table(repeats: int, n_items: int) -> None:
    cores = os.cpu_count() or 1
    per_item = median_seconds(lambda _: [cpu_row(i) for i in range(20)], 3) / 20
    serial_s = median_seconds(lambda root: cpu_run("serial", root, n_items), repeats)
    procs_s = median_seconds(lambda root: cpu_run("processes", root, n_items), repeats)
    peer_s = median_seconds(lambda _: pool_map(n_items), repeats)
    speedup = serial_s / procs_s
    print(f"\n## CPU-bound items: {n_items:,} items of {per_item * 1e3:.1f} ms numpy each, "
          f"{cores} cores (median of {repeats})\n")
    print("| executor | seconds | items/s | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| serial | {serial_s:.3f} | {n_items / serial_s:,.0f} | 1.00x |")
    print(f"| processes ({cores} workers) | {procs_s:.3f} | {n_items / procs_s:,.0f} | {speedup:.2f}x |")
    print(f"| peer: ProcessPoolExecutor.map, nothing saved | {peer_s:.3f} | {n_items / peer_s:,.0f} | "
          f"{serial_s / peer_s:.2f}x |")
    target = 0.85 * cores
    print(f"\ntarget >= {target:.2f}x (0.85 x {cores} cores): {'met' if speedup >= target else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["trivial"], help="run only the trivial-items table")
    parser.add_argument("--pairs", type=int, default=0,
                        help="only time N alternating (loop, TaskManager) pairs")
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=list(CHUNK_ROWS),
                        help="rows per chunk of the trivial items' dataset (default: %(default)s)")
    parser.add_argument("--cpu-items", type=int, default=CPU_ITEMS,
                        help="CPU-bound items (default: %(default)s)")
    args = parser.parse_args()
    for rows in args.chunk_rows:
        check_equal(rows)
    if args.pairs:
        for rows in args.chunk_rows:
            paired_ratios(args.pairs, rows)
        return
    trivial_table(args.repeats, tuple(args.chunk_rows))
    if args.only != "trivial":
        cpu_table(max(1, args.repeats // 2 + 1), args.cpu_items)


if __name__ == "__main__":
    main()
