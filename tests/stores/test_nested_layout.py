"""H5ShardStore(layout="nested") opens and extends zarr 2 H5_Nested_Store trees."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from zsaver.errors import StoreConfigError
from zsaver.stores import H5ShardStore


def _write_nested_tree(root: Path, name: str, data: np.ndarray, chunks: tuple[int, ...],
                       depth: int) -> None:
    """Write an array the way H5_Nested_Store did: raw chunk bytes as scalar datasets."""
    adir = root / name
    adir.mkdir(parents=True)
    (root / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (adir / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": list(data.shape), "chunks": list(chunks),
        "dtype": data.dtype.str, "compressor": None, "fill_value": 0, "order": "C",
        "filters": None, "dimension_separator": "/",
    }))
    grid = [-(-s // c) for s, c in zip(data.shape, chunks, strict=True)]
    for idx in np.ndindex(*grid):
        block = np.zeros(chunks, dtype=data.dtype)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, data.shape,
                                                                       strict=True))
        part = data[sl]
        block[tuple(slice(0, n) for n in part.shape)] = part
        split = len(idx) - depth
        folder = adir.joinpath(*map(str, idx[:split]))
        folder.mkdir(parents=True, exist_ok=True)
        with h5py.File(folder / f"{idx[split]}.h5", "a") as f:
            f.create_dataset(".".join(map(str, idx[split + 1 :])), data=np.void(block.tobytes()))


@pytest.mark.parametrize("depth", [2, 3])
def test_nested_tree_written_by_h5py_opens_with_zarr(tmp_path: Path, depth: int) -> None:
    data = np.arange(6 * 4 * 5, dtype="i4").reshape(6, 4, 5)
    _write_nested_tree(tmp_path, "arr", data, (2, 2, 2), depth)
    store = H5ShardStore(tmp_path, layout="nested", consolidate_depth=depth)
    np.testing.assert_array_equal(zarr.open_array(store, path="arr")[:], data)
    assert "arr/2/1/2" in store.list_keys("arr/")
    assert not any(k.endswith(".h5") for k in store.list_keys())


def test_nested_store_writes_new_chunks_in_the_same_layout(tmp_path: Path) -> None:
    data = np.arange(6 * 4 * 5, dtype="i4").reshape(6, 4, 5)
    _write_nested_tree(tmp_path, "arr", data, (2, 2, 2), 3)
    store = H5ShardStore(tmp_path, layout="nested", consolidate_depth=3)
    arr = zarr.open_array(store, path="arr", mode="r+")
    arr[0, 0, 0] = -1
    data[0, 0, 0] = -1
    store.consolidate()
    assert sorted(p.name for p in (tmp_path / "arr").iterdir()) == [".zarray", "0.h5", "1.h5",
                                                                      "2.h5"]
    with h5py.File(tmp_path / "arr" / "0.h5", "r") as f:
        assert sorted(f) == ["0.0", "0.1", "0.2", "1.0", "1.1", "1.2"]
        first = np.frombuffer(f["0.0"][()].tobytes(), dtype="i4")
    assert first[0] == -1
    np.testing.assert_array_equal(zarr.open_array(H5ShardStore(
        tmp_path, layout="nested", consolidate_depth=3), path="arr")[:], data)


def test_nested_layout_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="consolidate_depth >= 2"):
        H5ShardStore(tmp_path, layout="nested")
    with pytest.raises(StoreConfigError, match="layout must be"):
        H5ShardStore(tmp_path, layout="flat")
