"""The zsaver command on good and damaged stores: readable output, --json, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from zsaver.cli import main


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


def test_verify_names_a_truncated_chunk_and_exits_1(plain_store: Path, capsys) -> None:
    chunk = plain_store / "runs" / "a" / "c" / "4" / "0"
    chunk.write_bytes(chunk.read_bytes()[:5])
    assert main(["verify", str(plain_store)]) == 1
    out = capsys.readouterr().out
    assert "FAILED runs/a/c/4/0" in out


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
