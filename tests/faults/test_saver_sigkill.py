"""SIGKILL a writing process; what flush() returned for must be there, intact."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from zsaver import HDF5Saver, ZarrSaver

    kind, location, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    Saver = ZarrSaver if kind == "zarr" else HDF5Saver
    import zsaver.savers._zarr as zarr_saver
    zarr_saver.WRITE_BATCH_BYTES = 2 * 64 * 4 * 8  # whole chunks go out between flushes too
    opts = dict(chunks=64, fill_value=-1)

    def batch(r, i):
        n = 7 + (r * 5 + i) % 40
        return np.full((n, 4), r * 1000 + i, dtype=np.int64)

    if mode == "append":
        r = 0
        while True:
            with Saver(location, "d", **opts) as s:
                for i in range(25):
                    s.save(batch(r, i))
                s.flush()
                print("FLUSHED", r, len(s), flush=True)
                for i in range(25, 30):  # staged (and some whole chunks written) when killed
                    s.save(batch(r, i))
                if kind == "hdf5":  # HDF5 is only safe between flushes: wait to be killed
                    print("STAGED", r, flush=True)
                    sys.stdin.readline()
            r += 1
    else:
        n = 1000
        Saver(location, "d", approach="update", shape=(n, 4), **opts).save(np.zeros((1, 4)), indices=0)
        order = np.random.default_rng(0).permutation(n)
        r = 1
        while True:
            with Saver(location, "d", approach="update") as s:
                for i in order.tolist():
                    s.save(np.full(4, r, dtype=np.int64), indices=i)
                s.flush()
                print("FLUSHED", r, flush=True)
                if kind == "hdf5":
                    for i in order[:300].tolist():
                        s.save(np.full(4, r + 1, dtype=np.int64), indices=i)
                    print("STAGED", r, flush=True)
                    sys.stdin.readline()
            r += 1
    """
)


def expected_rows(rounds: int, per_round: int = 30) -> np.ndarray:
    parts = [
        np.full((7 + (r * 5 + i) % 40, 4), r * 1000 + i, dtype=np.int64)
        for r in range(rounds)
        for i in range(per_round)
    ]
    return np.concatenate(parts)


def read(kind: str, location: Path) -> np.ndarray:
    if kind == "zarr":
        return zarr.open_array(location, path="d", mode="r")[...]
    with h5py.File(location, "r") as f:
        return f["d"][...]


def run_and_kill(kind: str, location: Path, mode: str, kill_after_round: int) -> tuple[int, int]:
    """Start the child, SIGKILL it after its flush of ``kill_after_round``; (round, rows)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(location), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    flushed_round, flushed_rows = -1, 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            word, *nums = line.split()
            if word == "FLUSHED":
                flushed_round = int(nums[0])
                flushed_rows = int(nums[1]) if len(nums) > 1 else 0
                if flushed_round >= kill_after_round and kind == "zarr":
                    time.sleep(random.uniform(0, 0.05))  # anywhere after flush returned
                    break
            if word == "STAGED":
                if flushed_round >= kill_after_round:
                    break
                assert proc.stdin is not None
                proc.stdin.write("\n")  # let the child go on to its next round
                proc.stdin.flush()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return flushed_round, flushed_rows


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zarr", "hdf5"])
def test_appended_rows_survive_sigkill_after_flush(tmp_path: Path, kind: str) -> None:
    for trial in range(3):
        location = tmp_path / f"t{trial}.{'zarr' if kind == 'zarr' else 'h5'}"
        flushed_round, flushed_rows = run_and_kill(kind, location, "append", random.randint(0, 2))
        got = read(kind, location)
        # The child keeps going until the kill lands: allow many later rounds (a round
        # takes about a millisecond), each of which an uninterrupted run writes too.
        full = expected_rows(flushed_round + 500)
        assert flushed_rows <= got.shape[0] <= full.shape[0]
        # every row present is the row an uninterrupted run writes there
        np.testing.assert_array_equal(got, full[: got.shape[0]])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zarr", "hdf5"])
def test_updates_survive_sigkill_after_flush(tmp_path: Path, kind: str) -> None:
    for trial in range(3):
        location = tmp_path / f"u{trial}.{'zarr' if kind == 'zarr' else 'h5'}"
        flushed_round, _ = run_and_kill(kind, location, "update", random.randint(1, 2))
        got = read(kind, location)
        assert got.shape == (1000, 4)
        if kind == "hdf5":  # killed between flushes: exactly the flushed round
            assert (got == flushed_round).all()
        else:  # a later flush may have landed in part, but chunk by chunk, never torn
            assert np.isin(got, [flushed_round, flushed_round + 1]).all()
            per_chunk = got.reshape(-1, 4)[: 1000 // 64 * 64].reshape(-1, 64 * 4)
            assert (per_chunk.min(axis=1) == per_chunk.max(axis=1)).all()
