"""Scale-out on a real dask LocalCluster: worker processes write their own chunks."""

import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
from helpers import fails_on_multiples_of_7, row_of

from zsaver import TaskManager, ZarrSaver
from zsaver.stores import H5ShardStore
from zsaver.tasks import read_failures

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def _store(kind: str, root: Path):
    return zarr.storage.LocalStore(root) if kind == "local" else H5ShardStore(root)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "h5shard"])
def test_dask_workers_write_their_own_chunk_aligned_rows_and_the_driver_records_them(tmp_path, client, kind) -> None:
    saver = ZarrSaver(_store(kind, tmp_path / "store"), "result", chunks=16)
    report = TaskManager(fails_on_multiples_of_7, executor=client, batch_size=16).submit_tasks(
        range(203), saver, save_interval=32, on_error="skip", write="workers", progress=False
    )
    expected = np.stack([row_of(i) for i in range(203)])
    failed = [i for i in range(203) if i % 7 == 3]
    expected[failed] = np.nan
    data = zarr.open_array(_store(kind, tmp_path / "store"), path="result", mode="r")[:]
    np.testing.assert_array_equal(data, expected)
    assert [f.index for f in report.failures] == failed
    assert report.rows_saved == 203 and report.rows_saved_by_workers >= 203 - 2 * 16
    record = saver.read_record("tasks")
    assert record["complete"] and record["items_done"] == 203
    assert {f["index"] for f in read_failures(saver)} == set(failed)
    # A rerun finds everything done.
    again = TaskManager(row_of, executor=client).submit_tasks(range(203), saver, write="workers", progress=False)
    assert again.items_skipped == 203 and again.items_done == 0
