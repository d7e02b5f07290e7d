"""Run a TaskManager job to completion; the SIGKILL tests kill this process at a random moment.

Usage: python sigkill_runner.py DIRECTORY APPROACH EXECUTOR N_ITEMS
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from npy_saver import NpySaver  # noqa: E402

from zsaver import TaskManager  # noqa: E402


def slow_row(i: int) -> np.ndarray:
    time.sleep(0.0005)
    return np.arange(3, dtype=np.float64) + i


def make_saver(directory: str, approach: str) -> NpySaver:
    return NpySaver(directory, approach=approach, row_chunk=16)


def run(directory: str, approach: str, executor: str, n_items: int) -> None:
    saver = make_saver(directory, approach)
    TaskManager(slow_row, executor=executor, n_workers=2, batch_size=5).submit_tasks(
        range(n_items), saver, save_interval=7, progress=False
    )


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    print("finished", flush=True)
