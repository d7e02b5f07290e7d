"""The zsaver command on good and damaged stores: readable output, --json, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from nested_trees import write_nested_tree

from zsaver.cli import main
from zsaver.stores import H5ShardStore, ZipShardStore, open_store


@pytest.fixture
def plain_store(tmp_path: Path) -> Path:
    root = tmp_path / "results.zarr"
    group = zarr.open_group(root, mode="w")
    arr = group.create_array("runs/a", shape=(100, 4), chunks=(10, 4), dtype="f4")
    arr[:] = np.arange(400, dtype="f4").reshape(100, 4)
    group.create_array("b", shape=(7,), chunks=(3,), dtype="i8", compressors=None)[:] = np.arange(7)
    return root


def test_info_lists_groups_and_arrays_with_their_geometry(plain_store: Path, capsys) -> None:
    assert main(["info", str(plain_store)]) == 0
    out = capsys.readouterr().out
    assert "array runs/a: shape (100, 4) float32, chunks (10, 4)" in out
    assert "array b: shape (7,) int64, chunks (3,)" in out
    assert "chunks stored: 10" in out


def test_info_json_is_machine_readable(plain_store: Path, capsys) -> None:
    assert main(["info", "--json", str(plain_store)]) == 0
    info = json.loads(capsys.readouterr().out)
    arrays = {a["path"]: a for a in info["arrays"]}
    assert arrays["runs/a"]["chunks_stored"] == 10
    assert arrays["b"]["codecs"] == ["bytes"]
    assert set(info["groups"]) == {"/", "runs"}


def test_verify_passes_on_a_sound_store(plain_store: Path, capsys) -> None:
    assert main(["verify", "--json", str(plain_store)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["chunks_checked"] == 13 and report["failed"] == []


def test_verify_fails_on_a_missing_chunk_unless_allowed(plain_store: Path, capsys) -> None:
    (plain_store / "runs" / "a" / "c" / "2" / "0").unlink()
    assert main(["verify", str(plain_store)]) == 1
    assert "MISSING runs/a/c/2/0" in capsys.readouterr().out
    assert main(["verify", "--allow-missing", str(plain_store)]) == 0


def test_verify_names_a_truncated_chunk_and_exits_1(plain_store: Path, capsys) -> None:
    chunk = plain_store / "runs" / "a" / "c" / "4" / "0"
    chunk.write_bytes(chunk.read_bytes()[:5])
    assert main(["verify", str(plain_store)]) == 1
    out = capsys.readouterr().out
    assert "FAILED  runs/a/c/4/0" in out


@pytest.mark.parametrize("make", ["missing", "not_zarr", "plain_file"])
def test_bad_paths_give_one_line_errors_not_tracebacks(tmp_path: Path, make: str) -> None:
    target = tmp_path / "x"
    if make == "not_zarr":
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    elif make == "plain_file":
        target.write_text("hello")
    proc = subprocess.run(
        [sys.executable, "-m", "zsaver.cli", "info", str(target)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("zsaver info: error:")


# --- shard stores ----------------------------------------------------------------------


@pytest.fixture(params=["h5", "zip"])
def shard_store(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A shard store with 20 chunks of 10 rows: 4 chunks per shard, all loose."""
    root = tmp_path / f"results-{request.param}"
    cls = H5ShardStore if request.param == "h5" else ZipShardStore
    store = cls(root, chunks_per_shard=(4,))
    arr = zarr.create_array(store, name="x", shape=(200, 3), chunks=(10, 3), dtype="f8")
    arr[:] = np.arange(600, dtype="f8").reshape(200, 3)
    store.close()
    return root


def _expected() -> np.ndarray:
    return np.arange(600, dtype="f8").reshape(200, 3)


def test_consolidate_packs_loose_chunks_and_info_counts_them(shard_store: Path, capsys) -> None:
    assert main(["info", "--json", str(shard_store)]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["arrays"][0]["chunks_loose"] == 20 and before["arrays"][0]["chunks_in_shards"] == 0

    assert main(["consolidate", "--json", str(shard_store)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shards_rewritten"] == 5
    assert summary["files_after"] < summary["files_before"]

    assert main(["info", "--json", str(shard_store)]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["arrays"][0]["chunks_loose"] == 0 and after["arrays"][0]["chunks_in_shards"] == 20
    assert after["arrays"][0]["chunks_stored"] == 20
    np.testing.assert_array_equal(zarr.open_array(open_store(shard_store), path="x")[:], _expected())
    assert main(["verify", str(shard_store)]) == 0


def test_convert_plain_to_shards_and_back_keeps_the_data(plain_store: Path, capsys) -> None:
    before = zarr.open_array(plain_store, path="runs/a")[:]
    for target, cls in [("h5", H5ShardStore), ("zip", ZipShardStore), ("plain", zarr.storage.LocalStore)]:
        assert main(["convert", "--no-progress", str(plain_store), "--to", target]) == 0
        assert f"converted {plain_store} to {target}" in capsys.readouterr().out
        store = open_store(plain_store)
        assert isinstance(store, cls)
        np.testing.assert_array_equal(zarr.open_array(store, path="runs/a")[:], before)
        assert main(["verify", str(plain_store)]) == 0
        capsys.readouterr()


def test_verify_reports_a_missing_shard(shard_store: Path, capsys) -> None:
    assert main(["consolidate", "--no-progress", str(shard_store)]) == 0
    capsys.readouterr()
    shard = sorted(p for p in (shard_store / "x").iterdir() if p.name.startswith("shard-"))[1]
    shard.unlink()
    assert main(["verify", "--json", str(shard_store)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert len(report["missing"]) == 4 and not report["failed"]


def test_verify_names_the_chunks_of_a_truncated_shard(shard_store: Path, capsys) -> None:
    assert main(["consolidate", "--no-progress", str(shard_store)]) == 0
    capsys.readouterr()
    shard = sorted(p for p in (shard_store / "x").iterdir() if p.name.startswith("shard-"))[2]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert main(["verify", "--json", str(shard_store)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert sorted(bad["key"] for bad in report["failed"]) == sorted(f"x/c/{i}/0" for i in range(8, 12))
    assert all("shard" in bad["error"] for bad in report["failed"])


def test_convert_a_nested_tree_needs_and_takes_its_depth(tmp_path: Path, capsys) -> None:
    data = np.arange(4 * 4 * 4, dtype="i4").reshape(4, 4, 4)
    write_nested_tree(tmp_path, "arr", data, (2, 2, 2), 3)
    assert main(["convert", "--no-progress", str(tmp_path), "--to", "h5"]) == 2
    assert "pass the consolidate_depth" in capsys.readouterr().err
    assert main(["convert", "--no-progress", str(tmp_path), "--to", "h5", "--consolidate-depth", "3"]) == 0
    np.testing.assert_array_equal(zarr.open_array(open_store(tmp_path), path="arr")[:], data)


# --- found by a review of the command line ---------------------------------------------


def test_info_and_verify_read_a_zarr_zip_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "r.zip"
    with zarr.storage.ZipStore(path, mode="w") as store:
        zarr.create_array(store, name="x", shape=(4,), chunks=(2,), dtype="i4")[:] = 3
    assert main(["info", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["arrays"][0]["chunks_stored"] == 2
    assert main(["verify", str(path)]) == 0


@pytest.mark.filterwarnings("ignore:Duplicate name")  # a zip keeps each rewrite of a member
def test_info_counts_a_chunk_rewritten_in_a_zip_once(tmp_path: Path, capsys) -> None:
    path = tmp_path / "r.zip"
    with zarr.storage.ZipStore(path, mode="w") as store:
        arr = zarr.create_array(store, name="x", shape=(4,), chunks=(4,), dtype="i4")
        for i in range(3):
            arr[i] = i  # the one chunk, written three times
    assert main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)["arrays"][0]
    assert info["chunks_stored"] == 1


@pytest.mark.parametrize("shape, chunks, encoding, stored", [
    ((), (), None, 1),  # a 0-d array: its one chunk key is "c"
    ((4, 4), (2, 2), {"name": "default", "separator": "."}, 4),  # keys "c.0.1"
    ((4, 4), (2, 2), {"name": "v2", "separator": "."}, 4),  # keys "0.1"
])
def test_info_counts_chunks_in_every_key_encoding(tmp_path: Path, capsys, shape, chunks, encoding, stored) -> None:
    root = tmp_path / "s"
    kwargs = {"chunk_key_encoding": encoding} if encoding else {}
    zarr.create_array(zarr.storage.LocalStore(root), name="dots", shape=shape, chunks=chunks, dtype="i4",
                      **kwargs)[...] = 1
    assert main(["info", "--json", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)["arrays"][0]
    assert info["chunks_stored"] == stored and info["bytes_stored"] > 0


def test_info_takes_a_relative_path(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    # zarr's LocalStore lists keys wrongly when a relative root is a prefix of an array name.
    monkeypatch.chdir(tmp_path)
    zarr.create_array(zarr.storage.LocalStore(tmp_path / "s"), name="dots", shape=(4,), chunks=(2,),
                      dtype="i4")[:] = 1
    assert main(["info", "--json", "s"]) == 0
    assert json.loads(capsys.readouterr().out)["arrays"][0]["chunks_stored"] == 2


@pytest.mark.parametrize("content", [[], ["readme.txt"]])
def test_convert_refuses_a_directory_that_is_no_zarr_store(tmp_path: Path, capsys, content) -> None:
    root = tmp_path / "notes"
    root.mkdir()
    for name in content:
        (root / name).write_text("hello")
    assert main(["convert", str(root), "--to", "h5"]) == 2
    assert "not a zarr store" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == content  # nothing written


def test_a_damaged_marker_is_named_in_the_error(shard_store: Path, capsys) -> None:
    (shard_store / ".zsaver-store.json").write_text("{oops")
    assert main(["info", str(shard_store)]) == 2
    assert ".zsaver-store.json is damaged" in capsys.readouterr().err


def test_consolidate_refuses_a_worker_count_below_one(shard_store: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["consolidate", "--workers", "0", str(shard_store)])
    assert exit_info.value.code == 2 and "expected a positive int, got 0" in capsys.readouterr().err


def test_demo_json_and_a_file_in_the_way(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    from zsaver import _demo

    monkeypatch.setattr(_demo, "run_demo", functools.partial(_demo.run_demo, seeds=50))  # a short demo
    path = tmp_path / "d.zarr"
    summary = _demo.run_demo(path, quiet=True)
    assert summary["seeds"] == 50 and abs(summary["pi"] - 3.14) < 0.2 and capsys.readouterr().out == ""
    assert main(["demo", "--json", str(path)]) == 0  # resumes: every seed is done
    printed = json.loads(capsys.readouterr().out)
    assert printed["items_skipped"] == 50 and printed["path"] == str(path.resolve())
    (tmp_path / "afile").write_text("x")
    assert main(["demo", str(tmp_path / "afile")]) == 2
    assert "expected a directory" in capsys.readouterr().err
