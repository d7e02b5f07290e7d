import os

import h5py
import numpy as np
import pytest
from helpers import read_rows, row_of, slice_logging_saver, slow_row, zarr_saver
from npy_saver import NpySaver

from zsaver import HDF5Saver, TaskManager
from zsaver.tasks._ordering import ReorderBuffer


def test_reorder_buffer_releases_only_the_contiguous_prefix() -> None:
    buf: ReorderBuffer[str] = ReorderBuffer(10)
    buf.put(13, 2, "c")
    buf.put(12, 1, "b")
    assert list(buf.pop_ready()) == []
    buf.put(10, 2, "a")
    assert list(buf.pop_ready()) == ["a", "b", "c"]
    assert buf.next_start == 15 and len(buf) == 0


def test_reorder_buffer_refuses_a_batch_twice() -> None:
    buf: ReorderBuffer[str] = ReorderBuffer(0)
    buf.put(0, 1, "a")
    list(buf.pop_ready())
    with pytest.raises(ValueError, match="already"):
        buf.put(0, 1, "a")


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_results_come_back_in_item_order_despite_random_durations(executor: str) -> None:
    report = TaskManager(slow_row, executor=executor, n_workers=2, batch_size=3).submit_tasks(
        range(120), progress=False
    )
    assert np.array_equal(np.stack(report.results), np.stack([row_of(i) for i in range(120)]))


@pytest.mark.parametrize("executor", ["threads", "processes"])
@pytest.mark.parametrize("approach", ["append", "update"])
@pytest.mark.parametrize("saver_kind", ["zarr", "hdf5", "reference"])
def test_row_i_of_the_dataset_is_item_i_despite_random_durations(tmp_path, executor, approach, saver_kind) -> None:
    if saver_kind == "zarr":
        saver = zarr_saver(tmp_path / "ds", approach=approach, row_chunk=16)
    elif saver_kind == "hdf5":
        saver = HDF5Saver(tmp_path / "ds.h5", "result", approach=approach, chunks=(16, 4))
    else:
        saver = NpySaver(tmp_path / "ds", approach=approach, row_chunk=16)
    report = TaskManager(slow_row, executor=executor, n_workers=2, batch_size=2).submit_tasks(
        range(150), saver, save_interval=7, progress=False
    )
    assert report.rows_saved == 150 and report.items_done == 150
    if saver_kind == "hdf5":
        with h5py.File(tmp_path / "ds.h5", "r") as f:
            data = f["result"][:]
    else:
        data = read_rows(saver)
    assert np.array_equal(data, np.stack([row_of(i) for i in range(150)]))


def test_items_yielding_k_rows_occupy_rows_i_times_k(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    TaskManager(_three_rows, executor="threads", n_workers=2, batch_size=4).submit_tasks(
        range(25), saver, save_interval=5, progress=False, rows_per_item=3
    )
    data = read_rows(saver)
    assert data.shape == (75, 2)
    assert np.array_equal(data[:, 0], np.repeat(np.arange(25), 3))
    assert np.array_equal(data[:, 1], np.tile(np.arange(3), 25))


def _three_rows(i: int) -> np.ndarray:
    return np.stack([[i, j] for j in range(3)]).astype(np.int32)


def test_append_goes_after_rows_already_in_the_dataset(tmp_path) -> None:
    saver = zarr_saver(tmp_path / "ds")
    saver.save(np.full((5, 4), -1, dtype=np.float32))
    TaskManager(row_of).submit_tasks(range(10), saver, save_interval=3, progress=False)
    data = read_rows(saver)
    assert np.array_equal(data[:5], np.full((5, 4), -1)) and np.array_equal(data[5:], np.stack([row_of(i) for i in range(10)]))


@pytest.mark.parametrize("n_known", [True, False])
def test_workers_write_whole_chunks_at_their_rows_even_for_a_generator(tmp_path, n_known) -> None:
    saver = slice_logging_saver(tmp_path / "ds", row_chunk=16)
    saver.save(np.zeros((5, 4), dtype=np.float32))  # rows already there: item 0 goes to row 5
    items = range(203) if n_known else (i for i in range(203))
    report = TaskManager(slow_row, executor="processes", n_workers=2, batch_size=20).submit_tasks(
        items, saver, save_interval=40, write="workers", progress=False
    )
    data = read_rows(saver)
    assert np.array_equal(data[5:], np.stack([row_of(i) for i in range(203)])) and len(data) == 208
    assert report.rows_saved == 203 and report.rows_saved_by_workers > 150
    logged = [tuple(map(int, line.split())) for line in (tmp_path / "ds" / "slices.log").read_text().splitlines()]
    by_workers = sorted((a, b) for pid, a, b in logged if pid != os.getpid())
    assert by_workers and all(b % 16 == 0 or b == 208 for a, b in by_workers)  # batches end on chunk ends
    chunks = [set(range(a // 16, (b - 1) // 16 + 1)) for a, b in by_workers]
    assert sum(map(len, chunks)) == len(set().union(*chunks))  # so no chunk has two workers


def test_workers_refuse_a_dataset_held_in_this_process_memory(tmp_path) -> None:
    import zarr

    from zsaver import ZarrSaver

    store = zarr.storage.MemoryStore()
    memory = ZarrSaver(store, "result", chunks=4)
    with pytest.raises(ValueError, match="the copy keeps its own data"):
        TaskManager(row_of).submit_tasks(range(8), memory, write="workers", progress=False)
    assert not memory.clones_share_dataset()
    assert store._store_dict == {}  # refused before anything was written
    on_disk = zarr_saver(tmp_path / "ds", row_chunk=4)
    assert on_disk.clones_share_dataset()
    assert sorted(p.name for p in (tmp_path / "ds" / "result" / ".zsaver").iterdir()) == []  # probe removed


def test_workers_refuse_a_store_that_caches_values(tmp_path) -> None:
    # The driver's cache would keep what it held before the workers wrote, and a later
    # update through it would write those stale rows back.
    import zarr

    from zsaver import ZarrSaver
    from zsaver.stores import LRUStoreCache

    cached = ZarrSaver(LRUStoreCache(zarr.storage.LocalStore(tmp_path / "c"), max_size=2**20), "result", chunks=4)
    assert not cached.clones_share_dataset()
    with pytest.raises(ValueError, match="caches values"):
        TaskManager(row_of).submit_tasks(range(8), cached, write="workers", progress=False)
    assert not (tmp_path / "c" / "result" / "zarr.json").exists()  # refused before anything was written
