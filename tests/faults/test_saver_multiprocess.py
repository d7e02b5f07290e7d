"""Several real processes append to and update one dataset: no row is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from zsaver import HDF5Saver, ZarrSaver

PRESET = 200  # rows that exist before the workers start (chunk 16: the tail chunk is shared)
UPDATERS = 3
APPENDERS = 3
BATCHES = 25

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from zsaver import HDF5Saver, ZarrSaver

    kind, location, role, me = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    Saver = ZarrSaver if kind == "zarr" else HDF5Saver
    rng = np.random.default_rng(me)
    if role == "append":
        seq = 0
        with Saver(location, "d") as s:
            for b in range({batches}):
                n = int(rng.integers(1, 30))
                rows = np.stack([np.full(n, me), np.arange(seq, seq + n), np.zeros(n, int)], axis=1)
                s.save(rows)
                seq += n
                if b % 5 == 4:
                    s.flush()
        print(seq)
    else:
        mine = np.arange(me, {preset}, {updaters})
        rng.shuffle(mine)
        with Saver(location, "d", approach="update") as s:
            for k, part in enumerate(np.array_split(mine, 8)):
                s.save(np.stack([np.full(len(part), -1), part, np.full(len(part), me + 1)], axis=1), indices=part)
                if k % 2:
                    s.flush()
        print(len(mine))
    """
).format(batches=BATCHES, preset=PRESET, updaters=UPDATERS)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zarr", "hdf5"])
def test_concurrent_appenders_and_updaters_lose_no_row(tmp_path: Path, kind: str) -> None:
    location = tmp_path / ("d.zarr" if kind == "zarr" else "d.h5")
    Saver = ZarrSaver if kind == "zarr" else HDF5Saver
    preset = np.stack([np.full(PRESET, -1), np.arange(PRESET), np.zeros(PRESET, int)], axis=1)
    Saver(location, "d", chunks=16).save(preset)

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, kind, str(location), role, str(i)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for role, count in (("append", APPENDERS), ("update", UPDATERS))
        for i in range(count)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    appended = [int(o) for o in outputs[:APPENDERS]]

    if kind == "zarr":
        got = zarr.open_array(location, path="d", mode="r")[...]
    else:
        with h5py.File(location, "r") as f:
            got = f["d"][...]
    assert got.shape == (PRESET + sum(appended), 3)
    head, tail = got[:PRESET], got[PRESET:]
    # every preset row was updated by exactly its updater, none clobbered
    np.testing.assert_array_equal(head[:, 1], np.arange(PRESET))
    np.testing.assert_array_equal(head[:, 2], np.arange(PRESET) % UPDATERS + 1)
    # every appended row is there once, each appender's rows in its own order
    assert (tail[:, 2] == 0).all()
    for me, n in enumerate(appended):
        seqs = tail[tail[:, 0] == me, 1]
        np.testing.assert_array_equal(seqs, np.arange(n))
