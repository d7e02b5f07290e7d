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
