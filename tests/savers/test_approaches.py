"""The three approaches, sessions and runner support, on both savers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from saver_backends import Backend

from zsaver.errors import (
    DatasetNotFoundError,
    DTypeMismatchError,
    DuplicateIndexError,
    RowIndexError,
    SaverClosedError,
)


def rows(start: int, n: int, cols: int = 3) -> np.ndarray:
    return np.arange(start * cols, (start + n) * cols, dtype=np.float64).reshape(n, cols)


def test_append_creates_then_appends_along_axis_0(backend: Backend) -> None:
    with backend.saver(chunks=4) as s:
        for i in range(5):
            s.save(rows(3 * i, 3))
        assert len(s) == 15
    np.testing.assert_array_equal(backend.read(), rows(0, 15))


def test_bare_saves_append_and_are_durable_when_they_return(backend: Backend) -> None:
    s = backend.saver(chunks=4)
    s.save(rows(0, 3))
    np.testing.assert_array_equal(backend.read(), rows(0, 3))
    s.save(rows(3, 2))
    np.testing.assert_array_equal(backend.read(), rows(0, 5))
    assert len(s) == 5


def test_append_works_for_any_number_of_dimensions(backend: Backend) -> None:
    data = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    with backend.saver() as s:
        s.save(data)
        s.save(data + 1)
    np.testing.assert_array_equal(backend.read(), np.concatenate([data, data + 1]))
    one_d = backend.saver(name="flat")
    one_d.save(np.arange(4))
    one_d.save([7, 8])
    np.testing.assert_array_equal(backend.read("flat"), [0, 1, 2, 3, 7, 8])


def test_overwrite_replaces_at_first_save_of_a_session_then_appends(backend: Backend) -> None:
    backend.saver().save(rows(100, 7))
    with backend.saver("overwrite") as s:
        s.save(rows(0, 2))
        s.save(rows(2, 2))
    np.testing.assert_array_equal(backend.read(), rows(0, 4))


def test_bare_overwrite_save_is_its_own_session(backend: Backend) -> None:
    s = backend.saver("overwrite")
    s.save(rows(0, 5))
    s.save(rows(10, 2))
    np.testing.assert_array_equal(backend.read(), rows(10, 2))


def test_overwrite_may_change_dtype_and_row_shape(backend: Backend) -> None:
    backend.saver().save(rows(0, 3))
    backend.saver("overwrite").save(np.ones((2, 5), dtype=np.int8))
    out = backend.read()
    assert out.dtype == np.int8 and out.shape == (2, 5)


def test_overwrite_clears_records(backend: Backend) -> None:
    s = backend.saver()
    s.save(rows(0, 1))
    s.write_record("progress", {"done": 1})
    backend.saver("overwrite").save(rows(0, 1))
    assert backend.saver().read_record("progress") is None


@pytest.mark.parametrize(
    "indices",
    [
        2,
        -1,
        np.int64(3),
        slice(1, 4),
        slice(None, None, 2),
        [4, 0, 2],
        np.array([5, -6, 1]),
        np.array([3, 1], dtype=np.uint32),
        np.array([True, False, True, False, False, True]),
        [],
    ],
    ids=repr,
)
def test_update_accepts_every_index_form_like_numpy(backend: Backend, indices: object) -> None:
    backend.saver().save(rows(0, 6))
    selected = np.atleast_1d(np.arange(6)[indices])
    new = -rows(0, len(selected)) - 1
    expected = rows(0, 6)
    expected[selected] = new
    single = isinstance(indices, int | np.integer)
    backend.saver("update").save(new[0] if single else new, indices=indices)
    np.testing.assert_array_equal(backend.read(), expected)


def test_update_index_past_end_names_index_and_length(backend: Backend) -> None:
    backend.saver().save(rows(0, 4))
    with pytest.raises(IndexError, match=r"index 9 .*length 4") as info:
        backend.saver("update").save(rows(0, 1), indices=[9])
    assert isinstance(info.value, RowIndexError)
    with pytest.raises(IndexError, match=r"index -5 .*length 4"):
        backend.saver("update").save(rows(0, 1), indices=-5)


@pytest.mark.parametrize(
    "indices", [2**64 - 1, np.array([2**64 - 3], dtype=np.uint64), np.uint64(2**63), 2**70], ids=repr
)
def test_update_index_beyond_int64_is_refused_by_name_not_wrapped(backend: Backend, indices: object) -> None:
    backend.saver().save(rows(0, 5))
    with pytest.raises(RowIndexError, match=rf"index {int(np.max(indices))} .*length 5"):
        backend.saver("update", allow_resize=True).save(rows(9, 1), indices=indices)
    np.testing.assert_array_equal(backend.read(), rows(0, 5))


@pytest.mark.parametrize(
    ("indices", "expected"),
    [
        (slice(-2, 12), [8, 9, 10, 11]),  # negative start counts from the current end
        (slice(12, 14), [12, 13]),
        (slice(None, 12, 3), [0, 3, 6, 9]),
        (slice(-3, None), [7, 8, 9]),
    ],
    ids=repr,
)
def test_update_slices_with_allow_resize_count_negatives_from_the_current_end(
    backend: Backend, indices: slice, expected: list[int]
) -> None:
    backend.saver().save(rows(0, 10))
    new = -rows(0, len(expected)) - 1
    backend.saver("update", allow_resize=True).save(new, indices=indices)
    out = backend.read()
    np.testing.assert_array_equal(out[expected], new)
    assert len(out) == max(10, expected[-1] + 1)


def test_bare_update_after_runner_hooks_sees_rows_appended_since(backend: Backend) -> None:
    backend.saver().save(rows(0, 4))
    updater = backend.saver("update")
    assert updater.row_spec() is not None and updater.row_chunk  # looked at 4 rows
    backend.saver().save(rows(4, 2))  # another writer appends
    updater.save(-rows(0, 1), indices=-1)  # the last row of 6, not of 4
    updater.save(-rows(1, 1), indices=np.arange(6) == 0)  # a mask of the 6 rows
    expected = rows(0, 6)
    expected[5], expected[0] = -rows(0, 1)[0], -rows(1, 1)[0]
    np.testing.assert_array_equal(backend.read(), expected)


def test_session_update_looks_again_only_for_indices_past_the_rows_it_knows(
    backend: Backend,
) -> None:
    # A mask of the current rows, or a slice past the known end, after another writer
    # appended: refused or clipped before. -1 and open slices count from the end the
    # session knows, without a read per save (which cost about 1 ms each).
    backend.saver().save(rows(0, 4))
    updater = backend.saver("update")
    looks = 0
    disk_length = updater._disk_length  # type: ignore[attr-defined]

    def counting() -> int | None:
        nonlocal looks
        looks += 1
        return disk_length()

    with updater:
        updater.save(-rows(0, 1), indices=0)
        updater._disk_length = counting  # type: ignore[attr-defined]
        updater.save(-rows(1, 2), indices=slice(1, 3))
        updater.save(-rows(3, 1), indices=-1)  # the last of the 4 rows known
        updater.save(-rows(2, 1), indices=slice(2, None, 4))
        assert looks == 0
        backend.saver().save(rows(4, 3))  # another writer appends: 7 rows
        updater.save(-rows(11, 1), indices=np.arange(7) == 4)  # a mask of the 7 rows
        assert looks == 1
        updater.save(-rows(12, 1), indices=slice(5, 6))  # known now: no look
        updater.save(-rows(13, 1), indices=-1)  # now the last of 7, without a look
        assert looks == 1
    expected = -rows(0, 7)
    expected[4:7] = rows(4, 3)
    expected[4], expected[5], expected[6] = -rows(11, 1)[0], -rows(12, 1)[0], -rows(13, 1)[0]
    np.testing.assert_array_equal(backend.read(), expected)


def test_update_with_allow_resize_grows_with_fill_value(backend: Backend) -> None:
    backend.saver(fill_value=-7.0).save(rows(0, 2))
    backend.saver("update", allow_resize=True).save(rows(50, 1), indices=[5])
    out = backend.read()
    assert out.shape == (6, 3)
    np.testing.assert_array_equal(out[5], rows(50, 1)[0])
    assert (out[2:5] == -7.0).all()


def test_update_duplicate_indices_raise_value_error(backend: Backend) -> None:
    backend.saver().save(rows(0, 4))
    with pytest.raises(ValueError, match="index 1 appears more than once") as info:
        backend.saver("update").save(rows(0, 3), indices=[1, 2, -3])
    assert isinstance(info.value, DuplicateIndexError)


def test_update_needs_existing_dataset_or_shape(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError, match="shape=") as info:
        backend.saver("update").save(rows(0, 1), indices=0)
    assert isinstance(info.value, DatasetNotFoundError)
    backend.saver("update", shape=(4, 3), fill_value=0.5).save(rows(0, 1), indices=2)
    out = backend.read()
    assert out.shape == (4, 3) and (out[[0, 1, 3]] == 0.5).all()


def test_later_update_of_a_row_in_one_session_wins(backend: Backend) -> None:
    backend.saver(chunks=2).save(rows(0, 6))
    with backend.saver("update") as s:
        s.save(rows(10, 1), indices=3)
        s.save(rows(20, 2), indices=[3, 0])
        s.save(rows(30, 1), indices=[5])
    expected = rows(0, 6)
    expected[3], expected[0], expected[5] = rows(20, 1)[0], rows(21, 1)[0], rows(30, 1)[0]
    np.testing.assert_array_equal(backend.read(), expected)


def test_session_stages_until_flush(backend: Backend) -> None:
    with backend.saver(chunks=100) as s:
        s.save(rows(0, 5))
        assert backend.read() is None or len(backend.read()) == 0
        s.flush()
        np.testing.assert_array_equal(backend.read(), rows(0, 5))
        s.save(rows(5, 1))
        assert len(s) == 6
    np.testing.assert_array_equal(backend.read(), rows(0, 6))


def test_int_data_into_float_array_is_fine_float_into_int_raises(backend: Backend) -> None:
    s = backend.saver(dtype="f4")
    s.save(np.array([[1, 2, 3]]))
    assert backend.read().dtype == np.float32
    ints = backend.saver(name="ints", dtype="i2")
    ints.save([[1, 2]])
    with pytest.raises(TypeError, match=r"int16.*float64|float64.*int16") as info:
        ints.save(np.array([[1.5, 2.0]]))
    assert isinstance(info.value, DTypeMismatchError)
    with pytest.raises(TypeError, match="int16"):
        ints.save(np.array([[70000, 1]]))
    np.testing.assert_array_equal(backend.read("ints"), [[1, 2]])


@pytest.mark.parametrize("approach", ["append", "overwrite"])
def test_big_endian_data_and_dtypes_are_saved_by_value(backend: Backend, approach: str) -> None:
    """zarr 3 reopens an array created as '>i4' as native int32: the saver must agree."""
    backend.saver().save(rows(0, 2))
    backend.saver(approach, name="be").save(np.array([[1, 2], [3, 4]], dtype=">i4"))
    backend.saver(approach, name="opt", dtype=">f8").save(np.ones((2, 2)))
    backend.saver(approach).save(np.array(rows(10, 3), dtype=">f8"))  # overwrite replaces, never loses
    np.testing.assert_array_equal(backend.read("be"), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(backend.read("opt"), np.ones((2, 2)))
    expected = rows(10, 3) if approach == "overwrite" else np.concatenate([rows(0, 2), rows(10, 3)])
    np.testing.assert_array_equal(backend.read(), expected)


def test_saver_is_reusable_across_sessions_and_refuses_after_close(backend: Backend) -> None:
    s = backend.saver()
    with s:
        s.save(rows(0, 1))
    with s:
        s.save(rows(1, 1))
    s.close()
    s.close()
    with pytest.raises(SaverClosedError):
        s.save(rows(2, 1))
    np.testing.assert_array_equal(backend.read(), rows(0, 2))


def test_runner_contract_reserve_len_row_chunk_clone_records(backend: Backend) -> None:
    s = backend.saver("update", chunks=8)
    assert len(s) == 0 and s.row_chunk is None
    s.reserve(20, (3,), np.float64)
    assert len(s) == 20 and s.row_chunk == 8
    s.reserve(10, (3,), np.float32)  # never shrinks
    assert len(s) == 20
    clone = pickle.loads(pickle.dumps(s.clone()))
    clone.save(rows(0, 2), indices=[19, 0])
    out = backend.read()
    np.testing.assert_array_equal(out[[19, 0]], rows(0, 2))
    assert clone.clone("append").approach == "append"
    assert s.supports_records and s.read_record("done") is None
    s.write_record("done", {"items": [1, 2]})
    s.write_record("done", {"items": [1, 2, 3]})
    assert clone.read_record("done") == {"items": [1, 2, 3]}
    s.write_record("done", None)
    assert s.read_record("done") is None


def test_staged_rows_are_refused_if_another_writer_replaced_the_dataset(backend: Backend) -> None:
    from zsaver.errors import DatasetSpecError

    backend.saver().save(rows(0, 2))
    with pytest.raises(DatasetSpecError, match="replaced by another writer"), backend.saver() as s:
        s.save(rows(2, 2))
        backend.saver("overwrite").save(np.zeros((1, 5), dtype=np.int8))
    np.testing.assert_array_equal(backend.read(), np.zeros((1, 5), dtype=np.int8))
