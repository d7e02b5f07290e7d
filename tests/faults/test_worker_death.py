"""A worker process that dies is a failure of its item only; the run goes on."""

import concurrent.futures as cf
import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
from helpers import dies_on_13, read_rows, row_of, segfaults_on_5, zarr_saver

from zsaver import TaskError, TaskManager
from zsaver.tasks import read_failures


def test_item_that_kills_its_worker_fails_alone_and_the_run_goes_on(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    report = TaskManager(dies_on_13, executor="processes", n_workers=2, batch_size=4).submit_tasks(
        range(40), saver, save_interval=8, on_error="skip", progress=False
    )
    assert [(f.index, f.exc_type) for f in report.failures] == [(13, "WorkerDiedError")]
    expected = np.stack([row_of(i) for i in range(40)])
    expected[13] = np.nan
    np.testing.assert_array_equal(read_rows(saver), expected)
    assert [f["index"] for f in read_failures(saver)] == [13]


def test_segfaulting_item_fails_alone_in_a_user_supplied_pool(tmp_path) -> None:
    with cf.ProcessPoolExecutor(2) as pool:
        report = TaskManager(segfaults_on_5, executor=pool, batch_size=3).submit_tasks(
            range(12), on_error="skip", retries=1, progress=False
        )
    assert [(f.index, f.exc_type) for f in report.failures] == [(5, "WorkerDiedError")]
    assert report.results[5] is None and np.array_equal(report.results[6], row_of(6))


def test_dying_worker_with_on_error_raise_checkpoints_the_prefix_and_raises(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    with pytest.raises(TaskError, match="item 13 failed: WorkerDiedError") as info:
        TaskManager(dies_on_13, executor="processes", n_workers=2, batch_size=4).submit_tasks(
            range(40), saver, save_interval=100, progress=False
        )
    assert info.value.item_index == 13
    np.testing.assert_array_equal(read_rows(saver), np.stack([row_of(i) for i in range(13)]))


_DRIVER = """
import sys, time
import numpy as np, zarr
from zsaver import TaskManager, ZarrSaver

def slow(i):
    time.sleep(0.05)
    return np.arange(3.0) + i

if __name__ == "__main__":
    saver = ZarrSaver(zarr.storage.LocalStore(sys.argv[1]), "x", chunks=16)
    TaskManager(slow, executor="processes", n_workers=2, batch_size=5).submit_tasks(
        range(5000), saver, progress=False)
"""


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc/PID/stat (field 4 is the parent)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_pool_workers_exit_when_the_driver_is_killed(tmp_path) -> None:
    # A driver killed alone (the OOM killer, kill -9 PID) cannot shut its pool down;
    # its workers used to live on, idle forever or still writing.
    import os
    import signal
    import subprocess
    import time

    workers: list[int] = []
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    driver = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ds")])
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = _children(driver.pid)
        assert len(workers) >= 2, "the pool never started"
        time.sleep(0.5)  # the workers are busy now
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = [w for w in workers if Path(f"/proc/{w}").exists()
                 and "zombie" not in Path(f"/proc/{w}/status").read_text().lower()]
        assert alive == [], f"pool workers {alive} outlived their driver"
    finally:
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
        driver.kill()


_START_METHOD_DRIVER = """
import multiprocessing as mp, sys
import numpy as np
from zsaver import TaskManager, ZarrSaver

def square(i):
    return np.array([i * i], dtype=np.float64)

if __name__ == "__main__":
    mp.set_start_method(sys.argv[2])
    report = TaskManager(square, executor="processes", n_workers=2).submit_tasks(
        range(20), ZarrSaver(sys.argv[1], "x"), progress=False, on_error="skip", save_interval=5)
    print(report.items_done, len(report.failures))
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_pool_workers_stay_while_the_driver_lives_under_any_start_method(tmp_path, method) -> None:
    # Under "forkserver" the workers' parent is the fork server, not the driver: a
    # watch on the parent's pid alone made every worker exit at once.
    import subprocess

    script = tmp_path / "driver.py"
    script.write_text(_START_METHOD_DRIVER)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "ds"), method],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20", "0"]
