import numpy as np
import pytest
from helpers import read_rows, row_of, zarr_saver

from zsaver import ResumeMismatchError, Saver, TaskError, TaskManager

N = 50


class StopAt:
    """Raises at item ``stop`` (to interrupt a run) and counts the items it saw."""

    def __init__(self, stop: int | None) -> None:
        self.stop, self.seen = stop, []

    def __call__(self, i: int) -> np.ndarray:
        if i == self.stop:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of a run
        self.seen.append(i)
        return row_of(i)


def _uninterrupted(tmp_path, approach: str) -> np.ndarray:
    saver = zarr_saver(tmp_path / "reference", approach=approach)
    TaskManager(row_of).submit_tasks(range(N), saver, save_interval=6, progress=False)
    return read_rows(saver)


@pytest.mark.parametrize("approach", ["append", "update", "overwrite"])
def test_rerun_after_interruption_processes_only_unfinished_items(tmp_path, approach) -> None:
    saver = zarr_saver(tmp_path / "ds", approach=approach)
    with pytest.raises(KeyboardInterrupt):
        TaskManager(StopAt(23), batch_size=4).submit_tasks(range(N), saver, save_interval=6, progress=False)
    done = saver.read_record("tasks")["items_done"]
    assert 0 < done <= 23
    task = StopAt(None)
    report = TaskManager(task).submit_tasks(range(N), saver.clone(), save_interval=6, progress=False)
    assert task.seen == list(range(done, N))
    assert report.items_skipped == done and report.items_done == N - done
    np.testing.assert_array_equal(read_rows(saver), _uninterrupted(tmp_path, approach))


def test_append_rows_past_the_last_record_are_overwritten_on_resume(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    with pytest.raises(KeyboardInterrupt):
        TaskManager(StopAt(20)).submit_tasks(range(N), saver, save_interval=5, progress=False)
    done = saver.read_record("tasks")["items_done"]
    # What a SIGKILL between save and write_record leaves: rows the records do not vouch for.
    saver.save(np.full((7, 4), -99, dtype=np.float32))
    TaskManager(row_of).submit_tasks(range(N), saver, save_interval=5, progress=False)
    assert done == 20
    np.testing.assert_array_equal(read_rows(saver), _uninterrupted(tmp_path, "append"))


def test_rerun_of_a_finished_run_does_nothing(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    TaskManager(row_of).submit_tasks(range(N), saver, progress=False)
    task = StopAt(None)
    report = TaskManager(task).submit_tasks(range(N), saver, progress=False)
    assert task.seen == [] and report.items_skipped == N and report.rows_saved == 0
    assert len(saver) == N


def test_generator_run_resumes_and_a_finished_one_knows_its_count(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    with pytest.raises(TaskError):
        TaskManager(StopAtRaise(30)).submit_tasks((i for i in range(N)), saver, save_interval=4, progress=False)
    TaskManager(row_of).submit_tasks((i for i in range(N)), saver, save_interval=4, progress=False)
    np.testing.assert_array_equal(read_rows(saver), _uninterrupted(tmp_path, "append"))
    assert saver.read_record("tasks")["n_items"] == N
    with pytest.raises(ResumeMismatchError, match=f"for {N} items, got more"):
        TaskManager(row_of).submit_tasks((i for i in range(N + 1)), saver, progress=False)


class StopAtRaise:
    def __init__(self, stop: int) -> None:
        self.stop = stop

    def __call__(self, i: int) -> np.ndarray:
        if i == self.stop:
            raise RuntimeError("stop")
        return row_of(i)


def _interrupted(tmp_path):
    saver = zarr_saver(tmp_path / "ds")
    with pytest.raises(KeyboardInterrupt):
        TaskManager(StopAt(20)).submit_tasks(range(N), saver, save_interval=5, progress=False)
    return saver


def test_other_item_count_against_records_is_a_clear_error_and_writes_nothing(tmp_path) -> None:
    saver = _interrupted(tmp_path)
    before = read_rows(saver)
    with pytest.raises(ResumeMismatchError, match=f"for {N} items, got {N + 1} items.*resume=False"):
        TaskManager(row_of).submit_tasks(range(N + 1), saver, progress=False)
    np.testing.assert_array_equal(read_rows(saver), before)


def test_other_items_of_the_same_count_are_a_clear_error(tmp_path) -> None:
    saver = _interrupted(tmp_path)
    with pytest.raises(ResumeMismatchError, match="first 20 items differ"):
        TaskManager(row_of).submit_tasks(range(1, N + 1), saver, progress=False)
    assert len(saver) == 20


def test_resume_false_starts_over_after_the_existing_rows(tmp_path) -> None:
    saver = _interrupted(tmp_path)
    report = TaskManager(row_of).submit_tasks(range(1, N + 1), saver, resume=False, progress=False)
    assert report.items_skipped == 0 and len(saver) == 20 + N
    assert saver.read_record("tasks")["row_base"] == 20


def test_update_resume_with_different_rows_per_item_is_refused(tmp_path) -> None:
    saver = _interrupted(tmp_path)
    with pytest.raises(ResumeMismatchError, match="rows_per_item"):
        TaskManager(row_of).submit_tasks(range(N), saver, rows_per_item=1, progress=False)


def _two_rows(i: int) -> np.ndarray:
    if i == StopTwoRows.stop:
        raise KeyboardInterrupt
    return np.array([[i, 0], [i, 1]], dtype=np.int64)


class StopTwoRows:
    stop: int | None = None


@pytest.mark.parametrize("approach", ["append", "update"])
def test_items_of_k_rows_resume_at_row_i_times_k(tmp_path, approach) -> None:
    saver = zarr_saver(tmp_path / "ds", approach)
    StopTwoRows.stop = 17
    try:
        with pytest.raises(KeyboardInterrupt):
            TaskManager(_two_rows).submit_tasks(range(30), saver, save_interval=4, rows_per_item=2, progress=False)
    finally:
        StopTwoRows.stop = None
    assert 0 < saver.read_record("tasks")["items_done"] <= 17
    TaskManager(_two_rows).submit_tasks(range(30), saver, save_interval=4, rows_per_item=2, progress=False)
    data = read_rows(saver)
    assert np.array_equal(data[:, 0], np.repeat(np.arange(30), 2)) and np.array_equal(data[:, 1], np.tile([0, 1], 30))


def _fails(i: int) -> np.ndarray:
    raise RuntimeError("the first run dies")


def test_an_overwrite_rerun_after_nothing_was_saved_takes_the_new_row_shape(tmp_path) -> None:
    # The record of the first run says no item is done: the rerun still replaces
    # the old dataset, so its rows (3 values) must not decide the new rows' shape.
    saver = zarr_saver(tmp_path / "ds")
    saver.save(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(TaskError):
        TaskManager(_fails).submit_tasks(range(6), zarr_saver(tmp_path / "ds", "overwrite"), progress=False)
    report = TaskManager(row_of).submit_tasks(range(6), zarr_saver(tmp_path / "ds", "overwrite"), progress=False)
    assert report.failures == [] and report.items_done == 6
    np.testing.assert_array_equal(read_rows(saver), np.stack([row_of(i) for i in range(6)]))


def _h5_saver(directory, approach: str = "append", **options: object):  # type: ignore[no-untyped-def]
    from zsaver import HDF5Saver

    return HDF5Saver(directory / "r.h5", "result", approach=approach, **options)


def _durable_rows(saver) -> np.ndarray:  # type: ignore[no-untyped-def]
    import h5py

    from zsaver import HDF5Saver

    if not isinstance(saver, HDF5Saver):
        return read_rows(saver)

    with h5py.File(saver.path, "r") as f:
        return f[saver.dataset_name][:]


@pytest.mark.parametrize("make_saver", [zarr_saver, _h5_saver], ids=["zarr", "hdf5"])
def test_an_overwrite_after_an_append_run_that_saved_nothing_starts_afresh(tmp_path, make_saver) -> None:
    # The failed append run's record (nothing done, rows from 4 on) pinned the overwrite
    # run to row 4 of its new, empty dataset: the old rows were wiped, then the run
    # stopped with ResumeMismatchError.
    make_saver(tmp_path).save(np.full((4, 3), 7.0, dtype=np.float32))
    with pytest.raises(TaskError):
        TaskManager(_fails).submit_tasks(range(6), make_saver(tmp_path), progress=False)
    saver = make_saver(tmp_path, "overwrite")
    report = TaskManager(row_of).submit_tasks(range(6), saver, progress=False)
    assert (report.items_done, report.failures) == (6, [])
    np.testing.assert_array_equal(_durable_rows(make_saver(tmp_path)), np.stack([row_of(i) for i in range(6)]))
    assert saver.read_record("tasks")["row_base"] == 0


@pytest.mark.parametrize("make_saver", [zarr_saver, _h5_saver], ids=["zarr", "hdf5"])
def test_a_run_refused_at_its_first_save_does_not_bind_the_next_run_to_its_items(tmp_path, make_saver) -> None:
    # Its record (nothing done) said "10 items": the corrected rerun over 20 items was
    # refused with ResumeMismatchError although no row of the first run exists.
    bad = {"compression": "no-such-filter"} if make_saver is _h5_saver else {"compressors": ["no-such-codec"]}
    with pytest.raises((ValueError, TypeError)):
        TaskManager(row_of).submit_tasks(range(10), make_saver(tmp_path, **bad), progress=False)
    report = TaskManager(row_of).submit_tasks(range(20), make_saver(tmp_path), progress=False)
    assert (report.items_skipped, report.items_done) == (0, 20)
    np.testing.assert_array_equal(_durable_rows(make_saver(tmp_path)), np.stack([row_of(i) for i in range(20)]))


def test_an_append_record_whose_rows_may_be_on_disk_still_pins_the_rerun(tmp_path) -> None:
    # Rows past the record's row base may be a crashed run's unrecorded rows: the record
    # must keep the rerun on the same items (it rewrites those rows in place).
    saver = zarr_saver(tmp_path)
    with pytest.raises(TaskError):
        TaskManager(_fails).submit_tasks(range(10), saver, progress=False)
    saver.save(np.zeros((3, 4), dtype=np.float32))  # as if the failed run had flushed rows
    with pytest.raises(ResumeMismatchError, match="10 items"):
        TaskManager(row_of).submit_tasks(range(20), zarr_saver(tmp_path), progress=False)


@pytest.mark.parametrize("executor", ["serial", "threads"])
def test_a_task_that_changes_its_items_in_place_resumes(tmp_path, executor) -> None:
    # The fingerprint was taken after the task ran: items normalised in place
    # no longer matched fresh copies of themselves, and every rerun was refused.
    def normalise(x: np.ndarray) -> np.ndarray:
        x /= x.sum()
        return x.copy()

    def items() -> list[np.ndarray]:
        return [np.arange(1.0, 4.0) + i for i in range(20)]

    saver = zarr_saver(tmp_path / "ds")
    with pytest.raises(TaskError):
        TaskManager(lambda x: normalise(x) if x[0] < 11 else 1 / 0, executor=executor, batch_size=4) \
            .submit_tasks(items(), saver, save_interval=4, progress=False)
    report = TaskManager(normalise, executor=executor, batch_size=4).submit_tasks(
        items(), saver, save_interval=4, progress=False)
    assert (report.items_skipped, report.items_done) == (10, 10)
    expected = np.stack([normalise(x) for x in items()])
    np.testing.assert_allclose(read_rows(saver), expected)


class _RecordsWithoutLength(Saver):
    """Keeps rows and records in memory; does not report its length."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.records: dict[str, dict] = {}

    def save(self, data, indices=None, **kwargs):  # type: ignore[no-untyped-def]
        self.rows.extend(np.asarray(data))

    @property
    def supports_records(self) -> bool:
        return True

    def read_record(self, name: str):  # type: ignore[no-untyped-def]
        return self.records.get(name)

    def write_record(self, name: str, doc) -> None:  # type: ignore[no-untyped-def]
        self.records[name] = doc


def test_resuming_an_append_into_a_saver_that_hides_its_length_is_refused() -> None:
    # Rows flushed after the last record cannot be told apart: a rerun appended them twice.
    saver = _RecordsWithoutLength()
    with pytest.raises(TaskError):
        TaskManager(lambda i: row_of(i) if i < 6 else 1 / 0).submit_tasks(
            range(10), saver, save_interval=2, progress=False)
    with pytest.raises(ResumeMismatchError, match="does not report its length"):
        TaskManager(row_of).submit_tasks(range(10), saver, progress=False)
    TaskManager(row_of).submit_tasks(range(10), _RecordsWithoutLength(), resume=False, progress=False)
