import numpy as np
import pytest
import zarr
from helpers import (
    FlakyOnce,
    fails_at,
    fails_on_multiples_of_7,
    int_then_float,
    odd_shape_at,
    odd_value_at,
    read_rows,
    row_of,
    zarr_saver,
)

from zsaver import TaskError, TaskManager, ZarrSaver
from zsaver.tasks import read_failures


def _expected(n: int, failed: set[int]) -> np.ndarray:
    rows = np.stack([row_of(i) for i in range(n)])
    rows[sorted(failed)] = np.nan
    return rows


@pytest.mark.parametrize("executor", ["serial", "threads", "processes"])
def test_raise_checkpoints_every_item_before_the_failure_then_raises_with_index_and_traceback(tmp_path, executor) -> None:
    saver = zarr_saver(tmp_path / "ds")
    tm = TaskManager(fails_on_multiples_of_7, executor=executor, n_workers=2, batch_size=2)
    with pytest.raises(TaskError, match="item 3 failed: ValueError: item 3 is unlucky") as info:
        tm.submit_tasks(range(40), saver, save_interval=100, progress=False)
    assert info.value.item_index == 3
    assert "fails_on_multiples_of_7" in info.value.traceback_text and "Original traceback" in str(info.value)
    assert np.array_equal(read_rows(saver), _expected(3, set()))
    assert saver.read_record("tasks")["items_done"] == 3


def test_task_error_survives_pickling() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(TaskError("boom", item_index=4, traceback_text="tb")))
    assert (err.item_index, err.traceback_text) == (4, "tb")


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_skip_fills_failed_rows_and_records_failures_in_report_and_store(tmp_path, executor) -> None:
    saver = zarr_saver(tmp_path / "ds")
    report = TaskManager(fails_on_multiples_of_7, executor=executor, n_workers=2, batch_size=5).submit_tasks(
        range(30), saver, save_interval=4, on_error="skip", progress=False
    )
    failed = {i for i in range(30) if i % 7 == 3}
    assert {f.index for f in report.failures} == failed
    assert all(f.exc_type == "ValueError" and "unlucky" in f.message and f.traceback for f in report.failures)
    np.testing.assert_array_equal(read_rows(saver), _expected(30, failed))
    assert {f["index"] for f in read_failures(saver)} == failed and saver.read_record("tasks")["complete"]
    assert report.items_done == 30 and report.rows_saved == 30


def test_skip_uses_the_given_fill_value(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    TaskManager(fails_on_multiples_of_7).submit_tasks(
        range(10), saver, on_error="skip", fill_value=-5, progress=False
    )
    assert np.all(read_rows(saver)[3] == -5)


def test_failure_before_any_success_gets_fill_rows_once_the_row_shape_is_known(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    TaskManager(fails_on_multiples_of_7).submit_tasks(
        range(3, 12), saver, save_interval=1, on_error="skip", progress=False
    )
    expected = np.stack([row_of(i) for i in range(3, 12)])
    expected[[0, 7]] = np.nan
    np.testing.assert_array_equal(read_rows(saver), expected)


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_retries_give_a_transient_failure_another_chance(tmp_path, executor) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    report = TaskManager(FlakyOnce(marks), executor=executor, n_workers=2).submit_tasks(
        range(10), retries=1, progress=False
    )
    assert report.failures == []
    assert np.array_equal(np.stack(report.results), np.stack([row_of(i) for i in range(10)]))


def test_without_retries_a_transient_failure_is_a_failure(tmp_path) -> None:
    report = TaskManager(FlakyOnce(tmp_path)).submit_tasks(range(6), on_error="skip", progress=False)
    assert [f.index for f in report.failures] == [1, 3, 5]
    assert report.results[1] is None and np.array_equal(report.results[2], row_of(2))


def test_result_of_another_shape_is_a_failure_of_that_item(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    report = TaskManager(lambda i: np.zeros(3 if i == 4 else 4), batch_size=8).submit_tasks(
        range(8), saver, on_error="skip", progress=False
    )
    assert [(f.index, f.exc_type) for f in report.failures] == [(4, "ShapeMismatchError")]
    assert np.isnan(read_rows(saver)[4]).all() and len(saver) == 8


def _expected_with_shape_failures(n: int, odd: set[int]) -> np.ndarray:
    rows = np.stack([row_of(i) for i in range(n)])
    rows[sorted(odd)] = np.nan
    return rows


@pytest.mark.parametrize("odd, failed", [
    ((4,), [4]),
    ((4, 6), [4, 6]),
    ((0, 4), [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]),  # item 0 sets the shape: the others fail
])
def test_an_odd_result_fails_alone_wherever_it_sits_in_its_batch(tmp_path, odd, failed) -> None:
    # The first item of the run sets the row shape, not the first item of each
    # batch: item 4 opens a batch of 4 and must not take items 5-7 down with it.
    saver = zarr_saver(tmp_path / "ds")
    report = TaskManager(odd_shape_at, batch_size=4).submit_tasks(
        range(12), saver, on_error="skip", task_kwargs={"odd": odd}, progress=False
    )
    assert [(f.index, f.exc_type) for f in report.failures] == [(i, "ShapeMismatchError") for i in failed]
    data = read_rows(saver)
    assert len(data) == 12 and np.isnan(data[failed]).all()
    kept = [i for i in range(12) if i not in failed]
    assert not np.isnan(data[kept]).any()


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_the_row_shape_follows_item_order_not_completion_order(tmp_path, executor) -> None:
    # Batch 0 (items 0-3, rows of 4) finishes last; batch 1 (items 4-7, rows of 3)
    # finishes first. Item 0 comes first, so batch 1 is the one that fails.
    saver = zarr_saver(tmp_path / "ds")
    report = TaskManager(odd_shape_at, executor=executor, n_workers=2, batch_size=4).submit_tasks(
        range(12), saver, on_error="skip", task_kwargs={"odd": (4, 5, 6, 7), "slow": (0,)}, progress=False
    )
    assert [f.index for f in report.failures] == [4, 5, 6, 7]
    np.testing.assert_array_equal(read_rows(saver), _expected_with_shape_failures(12, {4, 5, 6, 7}))


def test_raise_on_a_shape_mismatch_keeps_the_items_before_it(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    with pytest.raises(TaskError, match="item 6 failed: ShapeMismatchError"):
        TaskManager(odd_shape_at, batch_size=4).submit_tasks(
            range(12), saver, task_kwargs={"odd": (6,)}, progress=False
        )
    assert saver.read_record("tasks")["items_done"] == 6
    np.testing.assert_array_equal(read_rows(saver), _expected(6, set()))


def test_workers_that_write_report_odd_results_as_failures(tmp_path) -> None:
    # A worker that writes its own rows checks them against the dataset's shape:
    # the odd item fails alone, its row gets the fill value, the run goes on.
    saver = zarr_saver(tmp_path / "ds", row_chunk=4)
    report = TaskManager(odd_shape_at, batch_size=4).submit_tasks(
        range(16), saver, write="workers", on_error="skip", task_kwargs={"odd": (8, 13)}, progress=False
    )
    assert [f.index for f in report.failures] == [8, 13] and report.rows_saved_by_workers > 0
    np.testing.assert_array_equal(read_rows(saver), _expected_with_shape_failures(16, {8, 13}))


def test_rows_already_in_the_dataset_set_the_row_shape(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    saver.save(np.ones((5, 3), dtype=np.float32))  # rows of 3 values already there
    report = TaskManager(odd_shape_at).submit_tasks(
        range(6), saver.clone(), on_error="skip", task_kwargs={"odd": (2, 3, 4, 5)}, progress=False
    )
    assert [f.index for f in report.failures] == [0, 1]  # rows of 4 do not fit rows of 3
    data = read_rows(saver)
    assert data.shape == (11, 3) and np.isnan(data[5:7]).all()
    np.testing.assert_array_equal(data[7:], np.stack([np.zeros(3) + i for i in range(2, 6)]))


def test_a_result_that_is_no_array_fails_alone(tmp_path) -> None:
    def task(i: int) -> object:
        return [np.zeros(4), np.zeros(3)] if i == 3 else row_of(i)

    saver = zarr_saver(tmp_path / "ds")
    report = TaskManager(task, batch_size=4).submit_tasks(range(8), saver, on_error="skip", progress=False)
    assert [(f.index, f.exc_type) for f in report.failures] == [(3, "ShapeMismatchError")]
    np.testing.assert_array_equal(read_rows(saver), _expected_with_shape_failures(8, {3}))


@pytest.mark.parametrize("batch_size", [2, 4])
def test_fill_rows_take_the_dtype_of_the_dataset_whatever_the_batching(tmp_path, batch_size) -> None:
    # Items 0-1 give floats, 2-3 ints (stored as floats), 4-6 fail, 7 a float. The
    # dataset is float64, so every failed item's row is NaN, also when its whole batch failed.
    def task(i: int) -> object:
        if i in (4, 5, 6):
            raise ValueError("bad")
        return np.int64(i) if i in (2, 3) else float(i) + 0.5

    saver = zarr_saver(tmp_path / "ds", row_chunk=4)
    TaskManager(task, batch_size=batch_size).submit_tasks(range(8), saver, save_interval=4, on_error="skip",
                                                          progress=False)
    np.testing.assert_array_equal(read_rows(saver), [0.5, 1.5, 2.0, 3.0, np.nan, np.nan, np.nan, 7.5])


def test_a_fill_value_refused_late_leaves_no_unsaved_item_recorded_as_done(tmp_path) -> None:
    # Batch 0 (ints: fill 1.5 cannot be stored) finishes last, after three float
    # batches; the refusal comes when batch 0 is released. Nothing after it may be
    # recorded as done, and a rerun with a fill that fits ends as a clean run.
    saver = zarr_saver(tmp_path / "ds", approach="update", row_chunk=10)
    with pytest.raises(ValueError, match=r"fill_value=1\.5 cannot be stored in the results' dtype int64 unchanged"):
        TaskManager(int_then_float, executor="threads", n_workers=2, batch_size=10).submit_tasks(
            range(40), saver, save_interval=100, on_error="skip", fill_value=1.5,
            task_kwargs={"slow": (0,)}, progress=False, max_in_flight=4,
        )
    record = saver.read_record("tasks")
    assert record is None or record["items_done"] == 0
    report = TaskManager(int_then_float).submit_tasks(range(40), saver.clone(), on_error="skip",
                                                      fill_value=-1, progress=False)
    # The first result (ints) sets the dtype: the float results fail alone, as in one go.
    assert [f.index for f in report.failures] == list(range(10, 40))
    expected = np.stack([np.array([i, i] if i < 10 else [-1, -1], dtype=np.int64) for i in range(40)])
    np.testing.assert_array_equal(read_rows(saver), expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"save_interval": 0}, "save_interval must be a positive int; got 0"),
        ({"on_error": "ignore"}, "on_error must be one of 'raise', 'skip'; got 'ignore'"),
        ({"retries": -1}, "retries must be an int >= 0; got -1"),
        ({"consolidate": "always"}, "consolidate must be 'end', a positive int or None; got 'always'"),
        ({"rows_per_item": 0}, "rows_per_item must be a positive int or None"),
        ({"write": "everywhere"}, "write must be one of 'driver', 'workers'"),
        ({"write": "workers"}, "write='workers' needs a saver"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(kwargs, match) -> None:
    calls = []
    with pytest.raises(ValueError, match=match):
        TaskManager(calls.append).submit_tasks(range(3), progress=False, **kwargs)
    assert calls == []


def test_unknown_executor_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'serial', 'threads', 'processes'.*got 'gpu'"):
        TaskManager(abs, executor="gpu")
    with pytest.raises(TypeError, match="got int"):
        TaskManager(abs, executor=4)


def test_workers_writing_into_an_overwrite_saver_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="got an 'overwrite' saver"):
        TaskManager(row_of).submit_tasks(range(3), zarr_saver(tmp_path / "ds", "overwrite"), write="workers")
    assert not (tmp_path / "ds").exists()


def test_workers_that_can_never_write_whole_chunks_are_refused_before_anything_is_written(tmp_path) -> None:
    # 5 rows, 16-row chunks, 2 rows per item: no item ever starts a chunk.
    saver = zarr_saver(tmp_path / "ds")
    saver.save(np.zeros((5, 4), dtype=np.float32))
    calls: list[int] = []

    def pair(i: int) -> np.ndarray:
        calls.append(i)
        return np.stack([row_of(i), row_of(i)])

    with pytest.raises(ValueError, match="never brings row 5 onto a boundary of 16-row chunks"):
        TaskManager(pair, executor="threads", n_workers=2).submit_tasks(
            range(20), saver, rows_per_item=2, write="workers", progress=False)
    assert calls == [] and len(saver) == 5 and saver.read_record("tasks") is None


def test_raise_with_worker_writes_keeps_the_rows_workers_wrote_before_the_failure(tmp_path) -> None:
    # The failing item's batch was written by its worker; the items before the
    # failure are recorded as done, so their rows must stay as written (not fill).
    saver = zarr_saver(tmp_path / "ds", row_chunk=4)
    with pytest.raises(TaskError, match="item 6 failed"):
        TaskManager(fails_at, batch_size=4).submit_tasks(
            range(12), saver, write="workers", task_kwargs={"bad": 6}, progress=False
        )
    assert saver.read_record("tasks")["items_done"] == 6
    assert np.array_equal(read_rows(saver)[:6], _expected(6, set()))


def _always_fails(i: int) -> np.ndarray:
    raise ValueError(f"item {i} never works")


@pytest.mark.parametrize("items", [[], "generator"])
def test_a_run_with_no_items_finishes_and_consolidates_nothing(tmp_path, items) -> None:
    saver = zarr_saver(tmp_path / "ds")
    todo = (i for i in []) if items == "generator" else items
    report = TaskManager(row_of).submit_tasks(todo, saver, progress=False)
    assert (report.items_done, report.rows_saved, report.failures) == (0, 0, [])


def test_a_run_where_every_item_fails_saves_nothing_and_a_rerun_tries_them_again(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    for _ in range(2):  # no result, so no row shape for fill rows: nothing is done
        report = TaskManager(_always_fails).submit_tasks(range(5), saver, on_error="skip", progress=False)
        assert [f.index for f in report.failures] == [0, 1, 2, 3, 4] and report.rows_saved == 0
        record = saver.read_record("tasks")
        assert (record["items_done"], record["complete"], read_failures(saver)) == (0, False, [])
    report = TaskManager(row_of).submit_tasks(range(5), saver, progress=False)  # now they work
    assert report.items_skipped == 0 and np.array_equal(read_rows(saver), _expected(5, set()))


def test_skipped_failures_are_recorded_once_across_a_resume(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    TaskManager(fails_on_multiples_of_7).submit_tasks(range(20), saver, save_interval=4, on_error="skip",
                                                      progress=False)
    again = TaskManager(fails_on_multiples_of_7).submit_tasks(range(20), saver, on_error="skip", progress=False)
    assert again.items_skipped == 20
    assert [f["index"] for f in read_failures(saver)] == [3, 10, 17]


def test_a_closed_saver_is_refused_before_a_completion_record_is_written(tmp_path) -> None:
    from zsaver.errors import SaverClosedError

    saver = zarr_saver(tmp_path / "ds")
    saver.close()
    with pytest.raises(SaverClosedError):
        TaskManager(row_of).submit_tasks(range(4), saver, progress=False)
    fresh = zarr_saver(tmp_path / "ds")
    assert fresh.read_record("tasks") is None
    assert TaskManager(row_of).submit_tasks(range(6), fresh, progress=False).items_done == 6


def _ints_then_floats_with_a_failure(i: int) -> np.ndarray:
    if i == 5:
        raise ValueError("item 5 is unlucky")
    return np.array([i]) if i < 4 else np.array([i + 0.75])


def test_a_skipped_item_does_not_make_its_batch_cast_silently(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds", row_chunk=4)
    report = TaskManager(_ints_then_floats_with_a_failure, batch_size=4).submit_tasks(
        range(8), saver, save_interval=4, on_error="skip", progress=False
    )
    assert [(f.index, f.exc_type) for f in report.failures] == [
        (4, "DTypeMismatchError"), (5, "ValueError"), (6, "DTypeMismatchError"), (7, "DTypeMismatchError")]
    assert "has dtype int64; got data of dtype float64" in report.failures[0].message
    assert read_rows(saver).ravel().tolist() == [0, 1, 2, 3, 0, 0, 0, 0]  # nothing truncated


@pytest.mark.parametrize("save_interval, batch_size", [(100, None), (3, None), (3, 1), (2, 5), (7, 3)])
@pytest.mark.parametrize("case", ["longer-text", "int-then-float", "float32-then-float64"])
@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for strings yet
def test_the_first_result_sets_the_dtype_whatever_the_batching(tmp_path, case, save_interval, batch_size):
    # The same items give the same dataset and the same failures for any batching:
    # numpy used to promote within one checkpoint and the saver refused across two.
    def task(i: int) -> object:
        if case == "longer-text":
            return np.array(["a" * (i + 1)])
        if case == "int-then-float":
            return np.array([i]) if i < 4 else np.array([i + 0.5])
        return np.array([i], dtype=np.float32) if i < 4 else np.array([0.1])

    saver = zarr_saver(tmp_path / "ds", row_chunk=4)
    report = TaskManager(task, batch_size=batch_size).submit_tasks(
        range(10), saver, save_interval=save_interval, on_error="skip", progress=False)
    failed = [f.index for f in report.failures]
    rows = read_rows(saver).ravel()
    if case == "longer-text":
        assert failed == list(range(1, 10)) and rows.tolist() == ["a"] + [""] * 9
    elif case == "int-then-float":
        assert failed == list(range(4, 10)) and rows.tolist() == [0, 1, 2, 3] + [0] * 6
    else:
        assert failed == [] and rows.dtype == np.float32
        np.testing.assert_array_equal(rows, np.array([0, 1, 2, 3] + [0.1] * 6, dtype=np.float32))


@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for strings yet
def test_the_savers_dtype_rules_from_the_first_result_on(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds", row_chunk=4, dtype="U8")
    report = TaskManager(lambda i: np.array(["a" * (i + 1)]), batch_size=3).submit_tasks(
        range(10), saver, save_interval=2, on_error="skip", progress=False)
    assert [f.index for f in report.failures] == [8, 9]  # 9 and 10 characters
    assert read_rows(saver).ravel().tolist() == ["a" * (i + 1) for i in range(8)] + ["", ""]


@pytest.mark.parametrize("fill_value", [1.5, 300, "x"])
def test_a_fill_value_the_results_dtype_cannot_hold_is_refused(tmp_path, fill_value) -> None:
    saver = zarr_saver(tmp_path / "ds", row_chunk=4)
    with pytest.raises(ValueError, match="cannot be stored in the results' dtype uint8 unchanged"):
        TaskManager(lambda i: np.array([i], dtype=np.uint8)).submit_tasks(
            range(8), saver, on_error="skip", fill_value=fill_value, progress=False
        )
    assert saver.read_record("tasks")["items_done"] == 0


@pytest.mark.parametrize(("fill_value", "dtype", "stored"), [
    (0.1, np.float32, np.float32(0.1)),  # floats round, as data does
    ("NaN", np.float32, np.float32(np.nan)),  # the text zarr itself writes for NaN
    (0, np.bool_, False),
])
def test_the_fill_value_rule_is_the_savers_rule(tmp_path, fill_value, dtype, stored) -> None:
    # What ZarrSaver(fill_value=...) accepts, the TaskManager's fill_value accepts too.
    ZarrSaver(zarr.storage.LocalStore(tmp_path / "plain"), "d", fill_value=fill_value).save(np.zeros((1, 2), dtype))
    saver = zarr_saver(tmp_path / "ds", row_chunk=4)
    report = TaskManager(lambda i: np.full(2, i, dtype) if i != 1 else 1 / 0).submit_tasks(
        range(3), saver, on_error="skip", fill_value=fill_value, progress=False)
    assert [f.index for f in report.failures] == [1]
    rows = read_rows(saver)
    assert rows.dtype == dtype
    np.testing.assert_array_equal(rows[1], np.full(2, stored, dtype))


@pytest.mark.parametrize("executor", ["serial", "processes"])
@pytest.mark.parametrize("odd_at", [2, 9])  # in the first checkpoint, or in a later one
@pytest.mark.parametrize("odd", ["n/a", None, {"a": 1}], ids=["text", "None", "dict"])
def test_a_result_holding_other_values_fails_alone_and_never_changes_the_dataset_dtype(
    tmp_path, executor, odd_at, odd
) -> None:
    # numpy stacks [0.25, "n/a"] as text and [0.25, None] as objects: one odd result
    # turned a float dataset into text, or stopped an on_error="skip" run.
    saver = zarr_saver(tmp_path / "ds", row_chunk=4)
    report = TaskManager(odd_value_at, executor=executor, batch_size=4).submit_tasks(
        range(12), saver, save_interval=4, on_error="skip", progress=False,
        task_kwargs={"odd": {odd_at: odd}},
    )
    assert [(f.index, f.exc_type) for f in report.failures] == [(odd_at, "DTypeMismatchError")]
    expected = np.arange(12) / 4
    expected[odd_at] = np.nan
    stored = read_rows(saver)
    assert stored.dtype == np.float64
    np.testing.assert_array_equal(stored, expected)


def test_text_results_are_fine_when_every_result_is_text(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds", row_chunk=4)
    TaskManager(lambda i: f"item {i}").submit_tasks(range(6), saver, progress=False)
    assert read_rows(saver).tolist() == [f"item {i}" for i in range(6)]


def test_each_checkpoint_writes_only_its_own_failures(tmp_path) -> None:
    # The whole failure list was rewritten at every checkpoint: quadratic in the failures.
    saver = zarr_saver(tmp_path / "ds")
    written: list[int] = []
    write_record = saver.write_record

    def counting(name: str, doc: dict) -> None:
        if ".failures." in name:
            written.append(len(doc["failures"]))
        write_record(name, doc)

    saver.write_record = counting  # type: ignore[method-assign]
    TaskManager(fails_on_multiples_of_7, batch_size=7).submit_tasks(
        range(70), saver, save_interval=7, on_error="skip", progress=False)
    assert written == [1] * 10  # one new failure per checkpoint, each written once
    assert [f["index"] for f in read_failures(saver)] == list(range(3, 70, 7))


@pytest.mark.parametrize("old_dtype", ["i8", "f4"])
def test_an_overwrite_run_takes_its_own_results_dtype_not_the_old_datasets(tmp_path, old_dtype) -> None:
    # The dataset made with the first result was the old one: float results over an
    # int dataset all failed, over a float32 one they lost precision.
    from zsaver import ZarrSaver

    ZarrSaver(tmp_path / "ds", "result").save(np.arange(4, dtype=old_dtype))
    saver = ZarrSaver(tmp_path / "ds", "result", approach="overwrite")
    report = TaskManager(lambda i: np.float64(i) / 3).submit_tasks(range(4), saver, on_error="skip",
                                                                   progress=False)
    assert report.failures == []
    np.testing.assert_array_equal(read_rows(saver), np.arange(4) / 3)
    assert read_rows(saver).dtype == np.float64


@pytest.mark.filterwarnings("ignore:The data type")  # zarr: no stable v3 spec for these dtypes
def test_variable_width_text_and_structured_results_are_saved_and_resumed(tmp_path) -> None:
    # Their dtype travelled as dtype.str ('StringDType()', '|V12'), which numpy cannot
    # read back: the run crashed, or left a dataset of fieldless records behind.
    from zsaver import ZarrSaver

    text = ZarrSaver(tmp_path / "t", "result", dtype=str)
    report = TaskManager(lambda i: None if i == 1 else "x" * (i + 1)).submit_tasks(
        range(4), text, on_error="skip", progress=False)
    assert [f.index for f in report.failures] == [1]
    assert read_rows(text).tolist() == ["x", "", "xxx", "xxxx"]  # a skipped row holds ""
    pair = np.dtype([("a", "<i4"), ("b", "<f8")])
    records = ZarrSaver(tmp_path / "r", "result")
    TaskManager(lambda i: np.array([(i, i / 2)], dtype=pair)).submit_tasks(range(3), records, progress=False)
    again = TaskManager(lambda i: np.array([(i, i / 2)], dtype=pair)).submit_tasks(range(3), records.clone(),
                                                                                progress=False)
    assert again.items_skipped == 3
    assert read_rows(records).dtype == pair and read_rows(records)["b"].ravel().tolist() == [0.0, 0.5, 1.0]


def test_a_first_result_the_savers_dtype_cannot_hold_fails_alone(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds", dtype="i4")
    report = TaskManager(lambda i: [1.5, 2, 3, 4][i]).submit_tasks(range(4), saver, on_error="skip",
                                                                    progress=False)
    assert [f.index for f in report.failures] == [0]
    assert read_rows(saver).ravel().tolist() == [0, 2, 3, 4]


def test_the_fill_value_is_judged_against_the_savers_dtype_not_the_first_result(tmp_path) -> None:
    # Int results into a saver made with dtype="f8": NaN fills the skipped rows.
    saver = zarr_saver(tmp_path / "ds", dtype="f8")
    report = TaskManager(lambda i: 1 // (i - 2)).submit_tasks(range(4), saver, on_error="skip",
                                                              fill_value=np.nan, progress=False)
    assert [f.index for f in report.failures] == [2]
    np.testing.assert_array_equal(read_rows(saver).ravel(), [-1.0, -1.0, np.nan, 1.0])
