"""ZarrSaver.flush() on shard stores that buffer writes (write_direct): durable when it returns.

A subprocess saves rows and records through ZarrSaver on an H5ShardStore or a
ZipShardStore with ``write_direct=True``, calls flush(), prints a marker and
goes on saving; the parent SIGKILLs it at the marker, reopens the store and
compares everything against what an uninterrupted run writes up to that flush.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from zsaver.stores import H5ShardStore, ZipShardStore

CLASSES = {"h5": H5ShardStore, "zip": ZipShardStore}
N_FLUSHES = 3  # the parent kills the child after a random one of these

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from zsaver import ZarrSaver
    from zsaver.stores import H5ShardStore, ZipShardStore

    kind, root = sys.argv[1], sys.argv[2]
    store = {"h5": H5ShardStore, "zip": ZipShardStore}[kind](root, write_direct=True)
    with ZarrSaver(store, "runs/d", chunks=16) as s:
        r = 0
        while True:
            for i in range(5):
                s.save(np.full((7, 3), r * 100 + i, dtype=np.int32))
            s.flush()
            s.write_record("progress", {"flushes": r + 1})
            print("FLUSHED", r, flush=True)
            r += 1
            # Staged when the parent kills us (lost then); the next flush writes it.
            s.save(np.full((7, 3), -5, dtype=np.int32))
            sys.stdin.readline()
    """
)


def _expected(flushes: int) -> np.ndarray:
    """What an uninterrupted run holds after ``flushes`` flushes."""
    blocks = []
    for r in range(flushes):
        if r:
            blocks.append(np.full((7, 3), -5, dtype=np.int32))
        blocks += [np.full((7, 3), r * 100 + i, dtype=np.int32) for i in range(5)]
    return np.concatenate(blocks)


@pytest.mark.parametrize("kind", sorted(CLASSES))
@pytest.mark.parametrize("kill_after", range(1, N_FLUSHES + 1))
def test_zarr_saver_flush_is_durable_on_write_direct_shard_stores(
    tmp_path: Path, kind: str, kill_after: int
) -> None:
    root = str(tmp_path / f"store.{kind}")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, root],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for r in range(kill_after):
            line = proc.stdout.readline()
            assert line.strip() == f"FLUSHED {r}", line
            if r + 1 < kill_after:
                proc.stdin.write("\n")
                proc.stdin.flush()
        proc.send_signal(signal.SIGKILL)  # right after the marker: no close(), no atexit
    finally:
        proc.kill()
        proc.wait(timeout=30)

    from zsaver import ZarrSaver

    store = CLASSES[kind](root)
    arr = zarr.open_array(store, path="runs/d", mode="r")
    np.testing.assert_array_equal(arr[:], _expected(kill_after))
    saver = ZarrSaver(CLASSES[kind](root), "runs/d")
    assert saver.read_record("progress") == {"flushes": kill_after}
