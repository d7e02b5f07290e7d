"""HDF5Saver specifics: creation options reach the file, records sit beside it."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.process
import pickle
import re
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from zsaver import HDF5Saver
from zsaver.errors import SaverOptionError


def test_chunk_and_compression_options_are_honoured(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    s = HDF5Saver(
        path,
        "a/b",
        dtype="f4",
        chunks=(16, 2, 3),
        compression="gzip",
        compression_opts=7,
        shuffle=True,
        fletcher32=True,
        fill_value=-3.0,
        attributes={"units": "K"},
    )
    s.save(np.ones((5, 2, 3), dtype=np.int16))
    with h5py.File(path, "r") as f:
        ds = f["a/b"]
        assert ds.dtype == np.float32 and ds.chunks == (16, 2, 3) and ds.maxshape == (None, 2, 3)
        assert ds.compression == "gzip" and ds.compression_opts == 7
        assert ds.shuffle and ds.fletcher32 and ds.fillvalue == -3.0
        assert ds.attrs["units"] == "K"
    assert s.row_chunk == 16


def test_rows_as_chunks_option_and_default_chunks(tmp_path: Path) -> None:
    HDF5Saver(tmp_path / "r.h5", "x", chunks=10).save(np.zeros((3, 4)))
    HDF5Saver(tmp_path / "r.h5", "y").save(np.zeros((3, 4)))
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert f["x"].chunks == (10, 4)
        assert f["y"].chunks[1:] == (4,) and f["y"].chunks[0] >= 1000  # about 1 MiB


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SaverOptionError, match="compresion"):
        HDF5Saver(tmp_path / "r.h5", compresion="gzip")


def test_records_are_atomic_sidecar_files(tmp_path: Path) -> None:
    s = HDF5Saver(tmp_path / "r.h5", "runs/x")
    s.write_record("done", {"n": 3})
    sidecar = tmp_path / "r.h5.zsaver" / "runs" / "x" / "done.json"
    assert json.loads(sidecar.read_text()) == {"n": 3}
    assert not list(sidecar.parent.glob("*.partial"))
    assert pickle.loads(pickle.dumps(s)).read_record("done") == {"n": 3}


def test_file_is_closed_between_flushes(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    with HDF5Saver(path, "x") as s:
        s.save(np.zeros((3, 2)))
        s.flush()
        s.save(np.ones((2, 2)))
        # another reader can open the file while the session stages more rows
        with h5py.File(path, "r") as f:
            assert f["x"].shape == (3, 2)
    with h5py.File(path, "r") as f:
        assert f["x"].shape == (5, 2)


def test_resuming_from_records_of_a_deleted_file_is_refused(tmp_path) -> None:
    from zsaver import TaskManager
    from zsaver.errors import ResumeMismatchError

    def row(i: int) -> np.ndarray:
        return np.full(2, i, dtype="f8")

    path = tmp_path / "r.h5"
    TaskManager(row).submit_tasks(range(10), HDF5Saver(path, "x"), progress=False)
    path.unlink()  # the records next to it say 10 items are saved
    with pytest.raises(ResumeMismatchError, match=r"up to 10.*the dataset has 0 rows"):
        TaskManager(row).submit_tasks(range(10), HDF5Saver(path, "x"), progress=False)
    HDF5Saver(path, "x").save(np.zeros((4, 2)))  # another file in its place, shorter
    with pytest.raises(ResumeMismatchError, match=r"up to 10.*the dataset has 4 rows"):
        TaskManager(row).submit_tasks(range(10), HDF5Saver(path, "x"), progress=False)
    path.unlink()
    report = TaskManager(row).submit_tasks(range(10), HDF5Saver(path, "x"), resume=False, progress=False)
    assert report.items_skipped == 0 and h5py.File(path, "r")["x"][:, 0].tolist() == list(range(10))


def test_a_dataset_that_cannot_grow_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from zsaver.errors import DatasetSpecError

    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("fixed", data=np.zeros((3, 2)))  # not chunked, maxshape (3, 2)
    before = path.read_bytes()
    saver = HDF5Saver(path, "fixed")
    with pytest.raises(DatasetSpecError, match=r"cannot grow to 5 rows: it was created with maxshape \(3, 2\)"):
        saver.save(np.ones((2, 2)))
    update = HDF5Saver(path, "fixed", approach="update", allow_resize=True)
    with pytest.raises(DatasetSpecError, match="cannot grow to 4 rows"), update:
        update.save(np.ones(2), indices=3)
    assert path.read_bytes() == before


def test_an_update_past_a_fixed_maxshape_is_refused_at_save_and_the_session_goes_on(tmp_path: Path) -> None:
    from zsaver.errors import DatasetSpecError

    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.arange(10.0), maxshape=(12,), chunks=(4,))
    with HDF5Saver(path, "a", "update", allow_resize=True) as saver:
        saver.save(np.array([100.0]), indices=0)
        with pytest.raises(DatasetSpecError, match="cannot grow to 16 rows"):
            saver.save(np.array([200.0]), indices=[15])
        saver.save(np.array([111.0]), indices=11)  # within maxshape: grows
    with h5py.File(path, "r") as f:
        assert f["a"].shape == (12,) and f["a"][0] == 100.0 and f["a"][11] == 111.0


def test_a_file_of_another_kind_and_a_dataset_on_the_path_are_named(tmp_path: Path) -> None:
    from zsaver.errors import DatasetSpecError, ShapeMismatchError

    other = tmp_path / "notes.h5"
    other.write_text("not hdf5")
    with pytest.raises(DatasetSpecError, match="expected an HDF5 file, found a file of another kind"):
        HDF5Saver(other, "x").save(np.ones((1, 2)))
    assert other.read_text() == "not hdf5"
    path = tmp_path / "r.h5"
    HDF5Saver(path, "x").save(np.ones((1, 2)))
    before = path.read_bytes()
    with pytest.raises(ShapeMismatchError, match="'x' is a dataset, so nothing can be stored below it"):
        HDF5Saver(path, "x/y").save(np.ones((1, 2)))
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "rows, hint",
    [
        (np.array([["ab"], ["cd"]]), "no fixed-width Unicode type"),
        (np.array([["2026-01-01"]], dtype="datetime64[s]"), "no datetime type"),
        (np.array([[5]], dtype="timedelta64[ms]"), "no timedelta type"),
    ],
    ids=["text", "datetime", "timedelta"],
)
def test_dtypes_hdf5_cannot_hold_are_refused_by_name_before_anything_is_written(
    tmp_path: Path, rows: np.ndarray, hint: str
) -> None:
    # h5py said "refuses the creation options {}": nothing about the data's dtype.
    from zsaver.errors import DTypeMismatchError

    path = tmp_path / "r.h5"
    with pytest.raises(DTypeMismatchError, match=re.escape(f"the data has dtype {rows.dtype}") + f".*{hint}"):
        HDF5Saver(path, "d").save(rows)
    assert not path.exists()
    with pytest.raises(DTypeMismatchError, match=f"the dtype= option has dtype .*{hint}"):
        HDF5Saver(path, "d", dtype=rows.dtype)  # refused when the saver is made
    assert not path.exists()


def _hold_open(path: str, seconds: float, ready: str) -> None:
    with h5py.File(path, "r"):
        Path(ready).touch()
        time.sleep(seconds)


def _start_reader(path: Path, seconds: float) -> multiprocessing.process.BaseProcess:
    ready = path.with_name("reader-ready")
    reader = multiprocessing.get_context("spawn").Process(target=_hold_open, args=(str(path), seconds, str(ready)))
    reader.start()
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline and reader.is_alive(), "the reader did not open the file"
        time.sleep(0.02)
    return reader


def test_a_flush_waits_for_a_reader_in_another_process(tmp_path: Path) -> None:
    # HDF5's lock made the flush fail at once with BlockingIOError, ending the run.
    path = tmp_path / "r.h5"
    HDF5Saver(path, "d").save(np.zeros((2, 3)))
    reader = _start_reader(path, 1.5)
    try:
        HDF5Saver(path, "d").save(np.ones((4, 3)))  # waits for the reader to close the file
    finally:
        reader.join()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["d"][:], np.r_[np.zeros((2, 3)), np.ones((4, 3))])


def test_a_reader_that_stays_past_open_timeout_fails_the_flush_and_keeps_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    HDF5Saver(path, "d").save(np.zeros((2, 3)))
    reader = _start_reader(path, 3.0)
    try:
        with HDF5Saver(path, "d", open_timeout=0.3) as saver:
            saver.save(np.ones((4, 3)))
            with pytest.raises(BlockingIOError, match=r"another process has the file open.*0\.3 s open_timeout"):
                saver.flush()
            reader.join()
            saver.flush()  # the staged rows were kept
    finally:
        reader.join()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["d"][:], np.r_[np.zeros((2, 3)), np.ones((4, 3))])


def test_the_file_open_in_this_process_is_named_as_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    HDF5Saver(path, "d").save(np.zeros((2, 3)))
    with h5py.File(path, "r"), pytest.raises(OSError, match="this process already has the file open"):
        HDF5Saver(path, "d").save(np.ones((1, 3)))


@pytest.mark.parametrize("bad", [-1, "10", True, float("nan")])
def test_open_timeout_must_be_seconds(tmp_path: Path, bad: object) -> None:
    with pytest.raises(SaverOptionError, match="open_timeout= expects seconds >= 0"):
        HDF5Saver(tmp_path / "r.h5", "d", open_timeout=bad)


def test_open_timeout_survives_pickling_and_clone(tmp_path: Path) -> None:
    saver = HDF5Saver(tmp_path / "r.h5", "d", open_timeout=2.5)
    assert pickle.loads(pickle.dumps(saver))._open_timeout == 2.5
    assert saver.clone()._open_timeout == 2.5
    saver.save(np.zeros((1, 2)))  # the option never reaches h5py's create_dataset
