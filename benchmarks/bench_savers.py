"""Benchmark: ZarrSaver and HDF5Saver against raw h5py, naive zarr and one bulk write.

Workload (issue 2): 2,000 saves of (100, 64) float32 (200,000 rows), chunks
(1000, 64), no compression; then 10,000 random single-row updates.
Prints medians of ``--repeats`` runs and ratios. ``--quick`` shrinks the workload.

    python benchmarks/bench_savers.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import zarr

from zsaver import HDF5Saver, ZarrSaver

ROWS_PER_SAVE, COLS, CHUNK = 100, 64, 1000


def batches(n_saves: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((ROWS_PER_SAVE, COLS), dtype=np.float32) for _ in range(n_saves)]


def append_zarrsaver(d: Path, data: list[np.ndarray]) -> None:
    with ZarrSaver(d / "z", "x", chunks=(CHUNK, COLS), compressors=None) as s:
        for b in data:
            s.save(b)


def append_hdf5saver(d: Path, data: list[np.ndarray]) -> None:
    with HDF5Saver(d / "h.h5", "x", chunks=(CHUNK, COLS)) as s:
        for b in data:
            s.save(b)


def append_raw_h5py(d: Path, data: list[np.ndarray]) -> None:
    with h5py.File(d / "raw.h5", "w") as f:
        ds = f.create_dataset(
            "x", shape=(0, COLS), maxshape=(None, COLS), chunks=(CHUNK, COLS), dtype="f4"
        )
        for b in data:
            n = ds.shape[0]
            ds.resize(n + b.shape[0], axis=0)
            ds[n:] = b


def append_naive_zarr(d: Path, data: list[np.ndarray]) -> None:
    zarr.create_array(
        d / "naive", shape=(0, COLS), chunks=(CHUNK, COLS), dtype="f4", compressors=None
    )
    for b in data:
        zarr.open_array(d / "naive", mode="r+").append(b)


def bulk_write(d: Path, data: list[np.ndarray]) -> None:
    whole = np.concatenate(data)
    arr = zarr.create_array(
        d / "bulk", shape=whole.shape, chunks=(CHUNK, COLS), dtype="f4", compressors=None
    )
    arr[:] = whole


def update_zarrsaver(d: Path, idx: np.ndarray, rows: np.ndarray) -> None:
    with ZarrSaver(d / "z", "x", approach="update") as s:
        for i, r in zip(idx.tolist(), rows, strict=True):
            s.save(r, indices=i)


def update_hdf5saver(d: Path, idx: np.ndarray, rows: np.ndarray) -> None:
    with HDF5Saver(d / "h.h5", "x", approach="update") as s:
        for i, r in zip(idx.tolist(), rows, strict=True):
            s.save(r, indices=i)


def update_raw_h5py(d: Path, idx: np.ndarray, rows: np.ndarray) -> None:
    with h5py.File(d / "raw.h5", "r+") as f:
        ds = f["x"]
        for i, r in zip(idx.tolist(), rows, strict=True):
            ds[i] = r


def timed(fn: Callable[[], None]) -> float:
    os.sync()  # no dirty pages of the previous run to flush during this one
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="200 saves and 1,000 updates")
    args = parser.parse_args()
    n_saves, n_updates = (200, 1000) if args.quick else (2000, 10_000)
    data = batches(n_saves)
    n_rows = n_saves * ROWS_PER_SAVE
    rng = np.random.default_rng(1)
    idx = rng.integers(0, n_rows, n_updates)
    new_rows = rng.random((n_updates, COLS), dtype=np.float32)

    appends = {
        "ZarrSaver (session)": append_zarrsaver,
        "HDF5Saver (session)": append_hdf5saver,
        "raw h5py (resize + write)": append_raw_h5py,
        "naive zarr (Array.append)": append_naive_zarr,
        "zarr bulk write (one call)": bulk_write,
    }
    updates = {
        "ZarrSaver (session)": update_zarrsaver,
        "HDF5Saver (session)": update_hdf5saver,
        "raw h5py (ds[i] = row)": update_raw_h5py,
    }
    append_times: dict[str, list[float]] = {k: [] for k in appends}
    update_times: dict[str, list[float]] = {k: [] for k in updates}
    for _ in range(args.repeats):
        d = Path(tempfile.mkdtemp(prefix="zsaver-bench-"))
        try:
            for name, fn in appends.items():
                append_times[name].append(timed(lambda fn=fn, d=d: fn(d, data)))
            expected = np.concatenate(data)
            assert np.array_equal(zarr.open_array(d / "z", path="x")[:], expected)
            for name, fn in updates.items():
                update_times[name].append(timed(lambda fn=fn, d=d: fn(d, idx, new_rows)))
            assert np.array_equal(
                zarr.open_array(d / "z", path="x")[:], h5py.File(d / "raw.h5")["x"][:]
            )
        finally:
            shutil.rmtree(d, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in append_times.items()}
    print(
        f"\nAppend: {n_saves} saves of ({ROWS_PER_SAVE}, {COLS}) float32, chunks ({CHUNK}, {COLS}), "
        f"no compression; median of {args.repeats} runs"
    )
    print(
        f"| {'writer':<28} | {'seconds':>8} | {'rows/s':>12} | {'vs raw h5py':>11} | {'vs bulk':>8} |"
    )
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 14}|{'-' * 13}|{'-' * 10}|")
    raw, bulk = med["raw h5py (resize + write)"], med["zarr bulk write (one call)"]
    for name, t in med.items():
        print(
            f"| {name:<28} | {t:8.3f} | {n_rows / t:12,.0f} | {raw / t:10.2f}x | {bulk / t:7.2f}x |"
        )

    umed = {k: statistics.median(v) for k, v in update_times.items()}
    print(
        f"\nUpdate: {n_updates} random single-row writes into the ({n_rows}, {COLS}) array; "
        f"median of {args.repeats} runs"
    )
    print(f"| {'writer':<28} | {'seconds':>8} | {'rows/s':>12} | {'vs raw h5py':>11} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 14}|{'-' * 13}|")
    uraw = umed["raw h5py (ds[i] = row)"]
    for name, t in umed.items():
        print(f"| {name:<28} | {t:8.3f} | {n_updates / t:12,.0f} | {uraw / t:10.2f}x |")


if __name__ == "__main__":
    main()
