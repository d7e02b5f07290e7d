"""H5ShardStore(layout="nested") opens and extends zarr 2 H5_Nested_Store trees."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from nested_trees import write_nested_tree

from zsaver.errors import StoreConfigError
from zsaver.stores import H5ShardStore, convert, open_store


@pytest.mark.parametrize("depth", [2, 3])
def test_nested_tree_written_by_h5py_opens_with_zarr(tmp_path: Path, depth: int) -> None:
    data = np.arange(6 * 4 * 5, dtype="i4").reshape(6, 4, 5)
    write_nested_tree(tmp_path, "arr", data, (2, 2, 2), depth)
    store = H5ShardStore(tmp_path, layout="nested", consolidate_depth=depth)
    np.testing.assert_array_equal(zarr.open_array(store, path="arr")[:], data)
    assert "arr/2/1/2" in store.list_keys("arr/")
    assert not any(k.endswith(".h5") for k in store.list_keys())


def test_nested_store_writes_new_chunks_in_the_same_layout(tmp_path: Path) -> None:
    data = np.arange(6 * 4 * 5, dtype="i4").reshape(6, 4, 5)
    write_nested_tree(tmp_path, "arr", data, (2, 2, 2), 3)
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


def _tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["plain", "h5", "zip"])
@pytest.mark.parametrize("opened_before", [False, True])
def test_convert_turns_a_nested_tree_into_each_target(
    tmp_path: Path, target: str, opened_before: bool
) -> None:
    data = np.arange(6 * 4 * 5, dtype="i4").reshape(6, 4, 5)
    write_nested_tree(tmp_path, "arr", data, (2, 2, 2), 3)
    if opened_before:  # a store opened by zsaver records the depth in its marker
        H5ShardStore(tmp_path, layout="nested", consolidate_depth=3).list_keys()
        convert(tmp_path, target)
    else:
        convert(tmp_path, target, consolidate_depth=3)
    store = open_store(tmp_path)
    assert type(store).__name__ == {"plain": "LocalStore", "h5": "H5ShardStore",
                                    "zip": "ZipShardStore"}[target]
    np.testing.assert_array_equal(zarr.open_array(store, path="arr")[:], data)
    names = [p.name for p in (tmp_path / "arr").rglob("*") if p.is_file()]
    assert not [n for n in names if n[0].isdigit() and n.endswith(".h5")]  # no nested file left
    if target == "plain":
        assert not (tmp_path / ".zsaver-store.json").exists()
        assert len(names) == 1 + 3 * 2 * 3  # .zarray and one file per chunk
    else:
        assert sorted(names) == [".zarray", f"shard-0.0.0.{target}"]


def test_convert_refuses_a_nested_tree_without_its_depth_and_writes_nothing(tmp_path: Path) -> None:
    write_nested_tree(tmp_path, "arr", np.arange(8, dtype="i4").reshape(2, 2, 2), (1, 1, 1), 3)
    before = _tree_files(tmp_path)
    for target in ["plain", "h5", "zip"]:
        with pytest.raises(StoreConfigError, match=r"H5_Nested_Store tree.*consolidate_depth"):
            convert(tmp_path, target)
    with pytest.raises(StoreConfigError, match="consolidate_depth must be an int >= 2"):
        convert(tmp_path, "h5", consolidate_depth=1)
    assert _tree_files(tmp_path) == before


def test_convert_refuses_a_depth_that_contradicts_the_marker(tmp_path: Path) -> None:
    write_nested_tree(tmp_path, "arr", np.arange(8, dtype="i4").reshape(2, 2, 2), (1, 1, 1), 2)
    H5ShardStore(tmp_path, layout="nested", consolidate_depth=2).list_keys()
    before = _tree_files(tmp_path)
    with pytest.raises(StoreConfigError, match="consolidate_depth=2, not 3"):
        convert(tmp_path, "plain", consolidate_depth=3)
    assert _tree_files(tmp_path) == before


@pytest.mark.parametrize("target", ["plain", "h5", "zip"])
def test_rerunning_a_finished_nested_conversion_changes_nothing(tmp_path: Path, target: str) -> None:
    data = np.arange(4 * 4 * 4, dtype="i4").reshape(4, 4, 4)
    write_nested_tree(tmp_path, "arr", data, (2, 2, 2), 3)
    convert(tmp_path, target, consolidate_depth=3)
    after = _tree_files(tmp_path)
    convert(tmp_path, target, consolidate_depth=3)  # the same command again, e.g. from a script
    assert _tree_files(tmp_path) == after
    np.testing.assert_array_equal(zarr.open_array(open_store(tmp_path), path="arr")[:], data)


def test_a_nested_store_reopened_without_layout_keeps_its_layout_and_member_format(tmp_path: Path) -> None:
    data = np.arange(6 * 4 * 5, dtype="i4").reshape(6, 4, 5)
    write_nested_tree(tmp_path, "arr", data, (2, 2, 2), 3)
    H5ShardStore(tmp_path, layout="nested", consolidate_depth=3)._ensure_open_sync()  # writes the marker
    store = H5ShardStore(tmp_path)  # layout comes from the marker
    zarr.open_array(store, path="arr", mode="r+")[0, 0, 0] = -1
    data[0, 0, 0] = -1
    store.consolidate()
    assert (store.layout, store.consolidate_depth) == ("nested", 3)
    with h5py.File(tmp_path / "arr" / "0.h5", "r") as f:
        assert all(f[name].shape == () for name in f)  # scalar opaque members, as H5_Nested_Store wrote
    np.testing.assert_array_equal(zarr.open_array(store, path="arr")[:], data)
