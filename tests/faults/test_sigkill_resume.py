"""SIGKILL a TaskManager run at random moments; the rerun must end with exactly the uninterrupted dataset."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sigkill_runner import make_saver, read_rows, run

RUNNER = Path(__file__).resolve().parent / "sigkill_runner.py"
N_ITEMS = 400
TRIALS = int(os.environ.get("ZSAVER_SIGKILL_TRIALS", "18"))


def _start(directory: Path, kind: str, approach: str, executor: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(directory), kind, approach, executor, str(N_ITEMS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, np.ndarray]:
    out: dict = {}
    for approach in ("append", "update"):
        directory = tmp_path_factory.mktemp(f"reference-{approach}")
        t0 = time.perf_counter()
        run(str(directory), "zarr", approach, "serial", N_ITEMS)
        out["seconds"] = time.perf_counter() - t0  # how long a run takes here and now
        out[approach] = read_rows(str(directory), "zarr")
    assert np.array_equal(out["append"], out["update"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_rerun_after_sigkill_at_a_random_moment_equals_an_uninterrupted_run(tmp_path, reference, trial) -> None:
    rng = random.Random(1000 + trial)
    approach = ("append", "update")[trial % 2]
    executor = ("serial", "processes", "processes-workers")[(trial // 2) % 3]
    kind = "reference" if trial % 4 == 3 else "zarr"  # the reference saver in one trial of four
    directory = tmp_path / "ds"
    # One or two kills before the run that is allowed to finish.
    for _ in range(1 + trial % 3 // 2):
        proc = _start(directory, kind, approach, executor)
        assert proc.stdout.readline() == b"ready\n"
        # Anywhere in the run: two workers finish in about half the serial time.
        span = reference["seconds"] * (1.0 if executor == "serial" else 0.5)
        time.sleep(rng.uniform(0.02, 1.0) * span)
        os.killpg(proc.pid, signal.SIGKILL)  # the worker processes die with it
        proc.communicate()
    saver = make_saver(str(directory), kind, approach)
    record = saver.read_record("tasks")
    done_before = 0 if record is None else record["items_done"]
    print(f"trial {trial}: {kind}/{approach}/{executor}, killed with {done_before} items recorded, {len(saver)} rows")
    proc = _start(directory, kind, approach, executor)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    data = read_rows(str(directory), kind)
    assert data.shape == reference[approach].shape, f"killed after {done_before} items"
    np.testing.assert_array_equal(data, reference[approach])
    assert make_saver(str(directory), kind, approach).read_record("tasks")["complete"]
