import threading

import numpy as np
import pytest
from helpers import row_of, zarr_saver

from zsaver import Saver, TaskManager


class ConsumptionProbe:
    """A generator of unknown length that notes how far ahead of the finished items it is pulled."""

    def __init__(self, n: int) -> None:
        self.n, self.pulled, self.finished, self.max_ahead = n, 0, 0, 0
        self.lock = threading.Lock()

    def items(self):
        for i in range(self.n):
            with self.lock:
                self.pulled += 1
                self.max_ahead = max(self.max_ahead, self.pulled - self.finished)
            yield i

    def task(self, i: int) -> np.ndarray:
        with self.lock:
            self.finished += 1
        return row_of(i)


@pytest.mark.parametrize("executor", ["serial", "threads"])
def test_generator_of_unknown_length_is_consumed_within_a_bounded_window(tmp_path, executor) -> None:
    probe = ConsumptionProbe(5000)
    saver = zarr_saver(tmp_path / "ds", row_chunk=1024)
    report = TaskManager(probe.task, executor=executor, n_workers=2, batch_size=10).submit_tasks(
        probe.items(), saver, save_interval=50, progress=False, max_in_flight=4
    )
    assert report.items_done == 5000 and len(saver) == 5000
    # at most max_in_flight batches are pulled and not yet done (plus the one being cut)
    assert probe.max_ahead <= 5 * 10


def test_results_without_a_saver_come_back_in_order_from_a_generator() -> None:
    report = TaskManager(str, executor="threads", n_workers=3, batch_size=2).submit_tasks(
        (i for i in range(31)), progress=False
    )
    assert report.results == [str(i) for i in range(31)]


def test_progress_bar_goes_to_stderr_with_total_and_failures(capsys) -> None:
    TaskManager(lambda i: 1 / (i - 3)).submit_tasks(range(10), on_error="skip")
    err = capsys.readouterr().err
    assert "10/10" in err and "failed=1" in err and "item/s" in err


def test_progress_false_prints_nothing(capsys) -> None:
    TaskManager(abs).submit_tasks(range(10), progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


class CountingSaver(Saver):
    """Keeps rows in memory and counts the calls the runner makes."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.calls: list[str] = []

    def save(self, data, indices=None, **kwargs):
        self.calls.append("save")
        self.rows.extend(np.asarray(data))

    def flush(self) -> None:
        self.calls.append("flush")

    def consolidate(self) -> None:
        self.calls.append("consolidate")

    def __len__(self) -> int:
        return len(self.rows)


@pytest.mark.parametrize("consolidate, expected", [("end", 1), (None, 0), (2, 5 // 2 + 1), (5, 1), (1, 5)])
def test_consolidation_runs_at_the_end_every_n_checkpoints_or_never(consolidate, expected) -> None:
    # 5 checkpoints. When the last one consolidated, the end does not do it again.
    saver = CountingSaver()
    report = TaskManager(row_of).submit_tasks(range(50), saver, save_interval=10, consolidate=consolidate,
                                              progress=False)
    assert saver.calls.count("consolidate") == report.consolidations == expected
    assert saver.calls.count("save") == 5 and len(saver) == 50
    if expected:  # nothing saved after the last consolidation
        def last(call: str) -> int:
            return len(saver.calls) - 1 - saver.calls[::-1].index(call)

        assert last("save") < last("consolidate")


def test_checkpoint_saves_then_flushes_every_save_interval_results() -> None:
    saver = CountingSaver()
    TaskManager(row_of).submit_tasks(range(25), saver, save_interval=10, consolidate=None, progress=False)
    assert saver.calls == ["save", "flush"] * 3 + ["flush"]  # the last: closing the run's session
    assert np.array_equal(np.stack(saver.rows), np.stack([row_of(i) for i in range(25)]))


def test_a_saver_without_records_still_gets_ordered_rows() -> None:
    saver = CountingSaver()
    TaskManager(row_of, executor="threads", n_workers=2, batch_size=3).submit_tasks(
        range(40), saver, save_interval=7, progress=False
    )
    assert np.array_equal(np.stack(saver.rows), np.stack([row_of(i) for i in range(40)]))
