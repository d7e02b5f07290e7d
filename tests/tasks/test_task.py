import numpy as np
import pytest
from helpers import CountingSetup, VectorSquare

from zsaver import Task, TaskManager
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
