"""zsaver demo: Monte Carlo estimates of pi, computed in parallel, checkpointed, then resumed.

This is what ``make demo`` runs. It takes a few seconds.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from monte_carlo_pi import run

import zsaver


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="zsaver-demo-"))
    print(f"zsaver {zsaver.__version__}: per-seed Monte Carlo estimates of pi")
    report, summary = run(directory, seeds=1_000, samples=20_000, executor="processes")
    print(f"run: {report}")
    again, _ = run(directory, seeds=1_000, samples=20_000, executor="processes", progress=False)
    print(f"rerun: {again.items_skipped} seeds already done, {again.items_done} computed (resume works)")
    print(f"results: {directory} (zarr array 'pi', one row [estimate, standard error] per seed)")
    print(f"summary: pi ~ {summary['pi_estimate']:.5f} +- {summary['standard_error']:.5f} "
          f"from {summary['seeds']} seeds (error {summary['error']:+.1e})")


if __name__ == "__main__":
    main()
