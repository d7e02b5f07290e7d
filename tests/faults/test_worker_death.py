"""A worker process that dies is a failure of its item only; the run goes on."""

import concurrent.futures as cf
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
