"""Run a TaskManager job to completion; the SIGKILL tests kill this process at a random moment.

Usage: python sigkill_runner.py DIRECTORY SAVER APPROACH EXECUTOR[-workers] N_ITEMS

SAVER is "zarr" (ZarrSaver on a LocalStore) or "reference" (tests/npy_saver.py).
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import zarr
from npy_saver import NpySaver

from zsaver import Saver, TaskManager, ZarrSaver


def slow_row(i: int) -> np.ndarray:
    time.sleep(0.0005)
    return np.arange(3, dtype=np.float64) + i


def make_saver(directory: str, kind: str, approach: str) -> Saver:
    if kind == "zarr":
        return ZarrSaver(zarr.storage.LocalStore(directory), "result", approach=approach, chunks=16)
    return NpySaver(directory, approach=approach, row_chunk=16)


def read_rows(directory: str, kind: str) -> np.ndarray:
    if kind == "zarr":
        return zarr.open_array(zarr.storage.LocalStore(directory), path="result", mode="r")[:]
    return NpySaver(directory).read()


def run(directory: str, kind: str, approach: str, executor: str, n_items: int) -> None:
    saver = make_saver(directory, kind, approach)
    # "processes-workers": worker processes write their own chunks (write="workers").
    write = "workers" if executor.endswith("-workers") else "driver"
    TaskManager(slow_row, executor=executor.removesuffix("-workers"), n_workers=2, batch_size=5).submit_tasks(
        range(n_items), saver, save_interval=7, progress=False, write=write
    )


if __name__ == "__main__":
    print("ready", flush=True)  # imports are done: the parent's kill timer starts now
    run(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    print("finished", flush=True)
