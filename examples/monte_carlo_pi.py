"""Per-seed Monte Carlo estimates of pi, computed in parallel and checkpointed with zsaver.

Row i of the dataset is the estimate from seed i: ``[estimate, standard error]``.
Kill the script at any moment and run it again: it finishes only the seeds
that are not done yet, and the dataset ends exactly as an uninterrupted run.

Run: python examples/monte_carlo_pi.py [DIRECTORY] [--seeds N] [--samples N] [--executor serial|threads|processes]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from zsaver import TaskManager, TaskReport, ZarrSaver


def estimate_pi(seed: int, samples: int = 100_000) -> np.ndarray:
    """Throw ``samples`` points into the unit square; 4 x the fraction inside the quarter circle."""
    xy = np.random.default_rng(seed).random((samples, 2))
    inside = np.count_nonzero((xy * xy).sum(axis=1) <= 1.0)
    p = inside / samples
    return np.array([4 * p, 4 * math.sqrt(p * (1 - p) / samples)])


def run(directory: str | Path, seeds: int = 2_000, samples: int = 100_000, executor: str = "processes",
        progress: bool = True) -> tuple[TaskReport, dict[str, Any]]:
    """Compute (or finish computing) the estimates into ``directory``; returns the report and a summary."""
    saver = ZarrSaver(zarr.storage.LocalStore(directory), "pi", chunks=256)
    report = TaskManager(estimate_pi, executor=executor).submit_tasks(
        range(seeds), saver, save_interval=200, progress=progress, task_kwargs={"samples": samples}
    )
    estimates = saver.array[:, 0]
    combined = float(estimates.mean())
    summary = {
        "seeds": len(estimates),
        "pi_estimate": combined,
        "standard_error": float(estimates.std(ddof=1) / math.sqrt(len(estimates))),
        "error": combined - math.pi,
    }
    return report, summary


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-seed Monte Carlo estimates of pi.")
    parser.add_argument("directory", nargs="?", default=None, help="where the zarr store goes (default: a temp dir)")
    parser.add_argument("--seeds", type=int, default=2_000)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--executor", default="processes")
    args = parser.parse_args()
    directory = args.directory or tempfile.mkdtemp(prefix="zsaver-pi-")
    report, summary = run(directory, args.seeds, args.samples, args.executor)
    print(f"results: {Path(directory).resolve()} (zarr array 'pi')")
    print(f"run: {report}")
    print(f"pi ~ {summary['pi_estimate']:.6f} +- {summary['standard_error']:.6f} "
          f"from {summary['seeds']} seeds (error {summary['error']:+.2e})")


if __name__ == "__main__":
    main()
