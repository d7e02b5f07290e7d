import concurrent.futures as cf
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import CountingSetup, SetupFails, TwoArgumentError, VectorSquare, read_rows, zarr_saver

from zsaver import Task, TaskError, TaskManager
from zsaver.tasks._task import FunctionTask, as_task


def test_plain_function_is_accepted_wherever_a_task_is() -> None:
    assert isinstance(as_task(abs), FunctionTask)
    assert TaskManager(abs).submit_tasks([-1, -2], progress=False).results == [1, 2]


def test_task_subclass_may_be_passed_as_a_class() -> None:
    class Double(Task):
        def process_item(self, item, **kwargs):
            return 2 * item

    assert TaskManager(Double).submit_tasks(range(3), progress=False).results == [0, 2, 4]


def test_not_a_task_is_refused_with_what_came() -> None:
    with pytest.raises(TypeError, match="got int"):
        TaskManager(3)  # type: ignore[arg-type]


def test_task_without_process_item_says_what_to_implement() -> None:
    with pytest.raises(NotImplementedError, match="process_item or process_items"):
        Task().process_item(1)


def test_setup_and_teardown_run_once_per_worker_thread_pool(tmp_path) -> None:
    report = TaskManager(CountingSetup(tmp_path), executor="threads", n_workers=3, batch_size=2).submit_tasks(
        range(30), progress=False, task_kwargs={"scale": 2}
    )
    assert len(list(tmp_path.glob("setup.*"))) == 1
    assert len(list(tmp_path.glob("teardown.*"))) == 1
    assert np.array_equal(report.results[5], (np.arange(4) + 50) * 2)


def test_setup_runs_once_per_worker_process_and_teardown_when_it_exits(tmp_path) -> None:
    TaskManager(CountingSetup(tmp_path), executor="processes", n_workers=2, batch_size=1).submit_tasks(
        range(20), progress=False
    )
    setups = {p.name.split(".")[1] for p in tmp_path.glob("setup.*")}
    assert len(list(tmp_path.glob("setup.*"))) == len(setups) <= 2  # never twice in one process
    assert {p.name.split(".")[1] for p in tmp_path.glob("teardown.*")} == setups


def test_vectorised_task_gets_whole_batches() -> None:
    task = VectorSquare()
    report = TaskManager(task, batch_size=10).submit_tasks(range(30), progress=False)
    assert report.results == [i * i for i in range(30)]
    assert task.batch_calls == 3


def test_failing_vectorised_batch_is_retried_item_by_item_so_only_the_bad_item_fails() -> None:
    items = [1, 2, -1, 4]
    report = TaskManager(VectorSquare(), batch_size=4).submit_tasks(items, progress=False, on_error="skip")
    assert [f.index for f in report.failures] == [2]
    assert report.results == [1, 4, None, 16]


class _InlineExecutor(cf.Executor):
    """An executor of the user's that runs calls in the calling thread."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: cf.Future = cf.Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_teardown_runs_when_workers_of_any_executor_ran_in_this_process(tmp_path) -> None:
    TaskManager(CountingSetup(tmp_path), executor=_InlineExecutor()).submit_tasks(range(5), progress=False)
    assert len(list(tmp_path.glob("setup.*"))) == len(list(tmp_path.glob("teardown.*"))) == 1
    distributed = pytest.importorskip("distributed")
    marks = tmp_path / "dask"
    marks.mkdir()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        TaskManager(CountingSetup(marks), executor=client).submit_tasks(range(5), progress=False)
        assert len(list(marks.glob("setup.*"))) == len(list(marks.glob("teardown.*"))) == 1


class _TeardownFails(Task):
    def teardown(self) -> None:
        raise RuntimeError("teardown failed")

    def process_item(self, item: int, **kwargs: object) -> np.ndarray:
        if item == 5:
            raise ValueError("bad item 5")
        return np.full(2, float(item))


def test_a_failing_teardown_warns_and_neither_hides_the_run_error_nor_leaves_the_saver_open(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    with pytest.warns(RuntimeWarning, match="teardown.*teardown failed"), pytest.raises(TaskError) as info:
        TaskManager(_TeardownFails()).submit_tasks(range(8), saver, save_interval=2, progress=False)
    assert info.value.item_index == 5
    saver.save(np.zeros((1, 2)))  # outside the run's session: written at once
    assert len(read_rows(saver)) == 6
    with pytest.warns(RuntimeWarning, match="teardown failed"):
        report = TaskManager(_TeardownFails()).submit_tasks(range(3), progress=False)
    assert report.items_done == 3


class _ShortBatches(Task):
    def process_items(self, items, **kwargs):  # type: ignore[no-untyped-def]
        return [float(i) for i in items][:-1]  # one result too few


def test_process_items_returning_the_wrong_count_fails_its_items_with_that_message() -> None:
    with pytest.raises(TaskError, match="process_items returned 4 results for 5 items"):
        TaskManager(_ShortBatches(), batch_size=5).submit_tasks(range(5), progress=False)
    report = TaskManager(_ShortBatches(), batch_size=5).submit_tasks(range(5), progress=False, on_error="skip")
    assert {f.message for f in report.failures} == {"process_items returned 4 results for 5 items"}


def test_a_worker_error_that_cannot_be_unpickled_is_reported_not_taken_for_a_death(tmp_path) -> None:
    # Its pickle broke the pool's result pipe: every item was reported as a dead
    # worker, the pool respawned again and again, and the error itself never shown.
    # In a fresh interpreter: importing dask.distributed makes such errors pickle.
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from helpers import SetupFails, zarr_saver
from zsaver import TaskManager
from zsaver.errors import WorkerError
try:
    TaskManager(SetupFails, executor="processes", n_workers=2, batch_size=4).submit_tasks(
        range(12), zarr_saver({str(tmp_path / "ds")!r}), on_error="skip", progress=False)
except WorkerError as exc:
    assert 'raise TwoArgumentError(3, "no GPU")' in exc.traceback_text, exc.traceback_text
    print("WorkerError:", exc.args[0])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "WorkerError: helpers.TwoArgumentError: 3: no GPU"
    with pytest.raises(TwoArgumentError):  # in the driver, the error itself
        TaskManager(SetupFails).submit_tasks(range(12), zarr_saver(tmp_path / "ds2"), progress=False)
