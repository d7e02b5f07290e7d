"""Quickstart: persist the results of a small batch job with ZarrSaver.

Each item yields a row of summary statistics; rows are appended in one session
(staged in memory, written chunk by chunk), a second pass fixes a few rows in
place with the update approach, and the result is an ordinary zarr array.

    python examples/quickstart_saver.py [output-directory]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from zsaver import ZarrSaver


def simulate(item: int) -> np.ndarray:
    """One 'result': mean, std, min, max of a noisy signal (stands in for real work)."""
    signal = np.random.default_rng(item).normal(loc=item % 10, scale=1.0, size=2_000)
    return np.array([signal.mean(), signal.std(), signal.min(), signal.max()], dtype=np.float32)


def main() -> None:
    out = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(tempfile.mkdtemp(prefix="zsaver-quickstart-"))
    )
    store = out / "results.zarr"
    n_items, batch = 5_000, 100
    started = time.perf_counter()

    with ZarrSaver(
        store,
        "runs/stats",
        approach="overwrite",
        chunks=(1024, 4),
        attributes={"columns": ["mean", "std", "min", "max"]},
    ) as saver:
        for first in range(0, n_items, batch):
            saver.save(np.stack([simulate(i) for i in range(first, first + batch)]))
        saver.write_record("progress", {"items_done": n_items})

    # Recompute a few items and write them back in place.
    redo = np.array([4_999, 0, 2_500])
    ZarrSaver(store, "runs/stats", approach="update").save(
        np.stack([simulate(int(i)) for i in redo]), indices=redo
    )
    elapsed = time.perf_counter() - started

    arr = zarr.open_array(store, path="runs/stats", mode="r")
    stats = arr[...]
    print(f"results:   {store} (dataset 'runs/stats')")
    print(f"array:     shape={arr.shape} dtype={arr.dtype} chunks={arr.chunks}")
    print(f"columns:   {arr.attrs['columns']}")
    print(f"mean of item means: {stats[:, 0].mean():.4f}   max of maxima: {stats[:, 3].max():.3f}")
    print(f"progress record: {ZarrSaver(store, 'runs/stats').read_record('progress')}")
    print(f"{n_items} items in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
