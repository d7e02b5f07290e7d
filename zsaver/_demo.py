"""What ``zsaver demo`` runs: a small batch job checkpointed into an HDF5 shard store."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from zsaver.savers import ZarrSaver
from zsaver.stores import H5ShardStore
from zsaver.tasks import TaskManager


def estimate_pi(seed: int, samples: int = 20_000) -> np.ndarray:
    """4 x the fraction of random points of the unit square inside the quarter circle."""
    xy = np.random.default_rng(seed).random((samples, 2))
    return np.array([4.0 * np.count_nonzero((xy * xy).sum(axis=1) <= 1.0) / samples])


def run_demo(path: str | Path, seeds: int = 2_000, *, quiet: bool = False) -> dict[str, Any]:
    """Estimate pi once per seed into ``path`` (resuming if it is there), then summarise.

    Prints the summary unless ``quiet``; returns it as a dict either way.
    """
    store = H5ShardStore(path)
    saver = ZarrSaver(store, "pi", chunks=100)
    report = TaskManager(estimate_pi, executor="threads").submit_tasks(
        range(seeds), saver, save_interval=250, consolidate="end", progress=not quiet
    )
    estimates = np.asarray(saver.array[:, 0])
    error = float(estimates.std(ddof=1) / math.sqrt(len(estimates)))
    files = sum(1 for p in Path(path).rglob("*") if p.is_file())
    summary = {
        "path": str(Path(path).resolve()), "items_done": report.items_done,
        "items_skipped": report.items_skipped, "failures": len(report.failures),
        "files_on_disk": files, "pi": float(estimates.mean()), "standard_error": error,
        "seeds": len(estimates),
    }
    if not quiet:
        print(report)
        print(f"results: {summary['path']} (H5ShardStore, array 'pi', {files} files on disk)")
        print(f"pi ~ {estimates.mean():.5f} +- {error:.5f} from {len(estimates)} seeds")
        print(f"look at it with: zsaver info {path}")
    return summary
