"""The item fingerprint that lets a rerun recognise its items, in every interpreter."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from helpers import read_rows, row_of, zarr_saver

from zsaver import ResumeMismatchError, TaskManager
from zsaver.tasks._progress import ItemFingerprint


def _digest(items) -> str:
    fp = ItemFingerprint()
    fp.update(items)
    return fp.hexdigest()


@pytest.mark.parametrize("a, b", [
    (list(range(5)), list(np.arange(5))),  # Python and numpy integers alike
    ([np.int32(7), np.uint8(3)], [7, 3]),
    ([np.uint64(5)], [5]),
    ([1.5, np.float32(0.25)], [np.float64(1.5), 0.25]),
    ([(1, "a"), [2, "b"]], [[1, "a"], (2, "b")]),  # tuples and lists alike
    ([{"x", "y", "z"}], [{"z", "y", "x"}]),
    ([{"b": 1, "a": 2}], [{"a": 2, "b": 1}]),
    ([np.arange(6).reshape(2, 3)], [np.arange(6).reshape(2, 3).copy(order="F")]),
])
def test_equal_items_give_equal_fingerprints(a, b) -> None:
    assert _digest(a) == _digest(b)


@pytest.mark.parametrize("a, b", [
    ([1, 2], [2, 1]),
    ([1], [1.0]),
    (["ab"], [["a", "b"]]),
    ([["ab", "c"]], [["a", "bc"]]),  # nested values are framed, so they cannot run together
    ([True], [1]),
    ([np.arange(6).reshape(2, 3)], [np.arange(6).reshape(3, 2)]),
    ([np.arange(3, dtype="i4")], [np.arange(3, dtype="i8")]),
    ([2**70], [2**70 + 1]),
    ([None], ["None"]),
    (["run", "s1"], ["runs", "1"]),  # items are framed too, not only nested values
    ([b"ab", b"c"], [b"a", b"bc"]),
    ([2**70, 5], [2**705]),
    ([np.ma.masked_array([1, 2], mask=[0, 1])], [np.ma.masked_array([1, 2], mask=[0, 0])]),
    ([np.longdouble(1) + np.longdouble(2) ** -60], [np.longdouble(1)]),
])
def test_different_items_give_different_fingerprints(a, b) -> None:
    assert _digest(a) != _digest(b)


def test_batching_does_not_change_the_fingerprint() -> None:
    items = [3, "x", (1, 2), 4.5, 9]
    whole, parts = ItemFingerprint(), ItemFingerprint()
    whole.update(items)
    parts.update(items[:2])
    parts.update(items[2:])
    assert whole.hexdigest() == parts.hexdigest() and whole.count == parts.count == 5


def test_sets_and_dicts_of_strings_give_one_fingerprint_whatever_the_hash_seed() -> None:
    code = (
        "from zsaver.tasks._progress import ItemFingerprint as F; f = F(); "
        "f.update([{'alpha', 'beta', 'gamma', 'delta'}, {'k1': 1, 'k2': {'u', 'v'}}, frozenset('xyz')]); "
        "print(f.hexdigest())"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2", "3", "4")
    }
    assert len(digests) == 1


def test_a_run_over_range_resumes_over_np_arange(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")

    def stop_at_30(i: int) -> np.ndarray:
        if i == 30:
            raise KeyboardInterrupt
        return row_of(i)

    with pytest.raises(KeyboardInterrupt):
        TaskManager(stop_at_30, batch_size=5).submit_tasks(range(50), saver, save_interval=10, progress=False)
    done = saver.read_record("tasks")["items_done"]
    assert 0 < done <= 30
    report = TaskManager(row_of).submit_tasks(np.arange(50), saver.clone(), save_interval=10, progress=False)
    assert report.items_skipped == done
    np.testing.assert_array_equal(read_rows(saver), np.stack([row_of(i) for i in range(50)]))


def test_a_container_holding_itself_gets_a_fingerprint() -> None:
    loop: list = [1]
    loop.append(loop)
    assert _digest([loop]) == _digest([loop]) != _digest([[1, [1]]])


def _make_version_1(saver, items) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the saver's record as a zsaver before fingerprint version 2 wrote it."""
    record = saver.read_record("tasks")
    legacy = ItemFingerprint(1)
    legacy.update(list(items)[: record["items_done"]])
    del record["fingerprint_version"]
    record["prefix_fingerprint"] = legacy.hexdigest()
    saver.write_record("tasks", record)


class _NoPickle:
    """An item that does not pickle and whose repr holds no address (like an open file's)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("not picklable")

    def __repr__(self) -> str:
        return f"<NoPickle {self.n}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NoPickle) and other.n == self.n

    __hash__ = object.__hash__


def _make_version_2(saver, items) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the saver's record as the release with fingerprint version 2 wrote it."""
    record = saver.read_record("tasks")
    old = ItemFingerprint(2)
    old.update(list(items)[: record["items_done"]])
    record["fingerprint_version"], record["prefix_fingerprint"] = 2, old.hexdigest()
    saver.write_record("tasks", record)


@pytest.mark.parametrize(
    "items, make_old",
    [(list(np.arange(40)), _make_version_1), ([f"item-{i}" for i in range(40)], _make_version_1),
     ([_NoPickle(i) for i in range(40)], _make_version_2)],
    ids=["ints-v1", "text-v1", "unpicklable-v2"],
)
def test_a_run_recorded_with_the_old_fingerprint_resumes_and_is_recorded_anew(tmp_path, items, make_old) -> None:
    saver = zarr_saver(tmp_path / "ds")
    calls = []

    def stop_at_25(item: object) -> np.ndarray:
        if item in (items[25],):
            raise KeyboardInterrupt
        calls.append(item)
        return row_of(len(calls))

    with pytest.raises(KeyboardInterrupt):
        TaskManager(stop_at_25, batch_size=5).submit_tasks(items, saver, save_interval=10, progress=False)
    make_old(saver, items)
    done = saver.read_record("tasks")["items_done"]
    with pytest.raises(ResumeMismatchError, match=f"first {done} items differ"):
        TaskManager(row_of).submit_tasks(items[::-1], saver.clone(), progress=False)
    report = TaskManager(lambda item: row_of(0)).submit_tasks(items, saver.clone(), progress=False)
    assert report.items_skipped == done and report.items_done == 40 - done
    record = saver.read_record("tasks")
    assert record["fingerprint_version"] == ItemFingerprint.VERSION and record["complete"]
    current = ItemFingerprint()
    current.update(items)
    assert record["prefix_fingerprint"] == current.hexdigest()


def test_an_unknown_fingerprint_version_is_refused(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    TaskManager(row_of).submit_tasks(range(5), saver, progress=False)
    record = saver.read_record("tasks")
    saver.write_record("tasks", dict(record, fingerprint_version=99))
    with pytest.raises(ResumeMismatchError, match="fingerprints of version 99"):
        TaskManager(row_of).submit_tasks(range(5), saver.clone(), progress=False)


def test_items_that_do_not_pickle_get_the_same_fingerprint_in_every_process() -> None:
    # Their repr holds a memory address: a rerun with the very same items used to be
    # refused as a run over other items. The serial and threads executors take them.
    code = (
        "import threading; from zsaver.tasks._progress import ItemFingerprint as F; f = F(); "
        "f.update([(lambda k=k: k) for k in range(3)] + [threading.Lock()]); print(f.hexdigest())"
    )
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout for _ in range(3)}
    assert len(digests) == 1
    one, other = ItemFingerprint(), ItemFingerprint()
    one.update([threading.Lock()])
    other.update([threading.RLock()])
    assert one.hexdigest() != other.hexdigest()  # the type still counts
