"""FileLock excludes other processes and other threads, byte by byte of one lock file."""

import fcntl
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from zsaver._filelock import DATASET_LOCK_SPAN, STORE_LOCK_SPAN, FileLock, dataset_lock_base

needs_ofd = pytest.mark.skipif(not hasattr(fcntl, "F_OFD_SETLKW"), reason="Linux OFD locks")


def _increment(lock_path: str, counter: str, n: int, offset: int = 0) -> None:
    for _ in range(n):
        with FileLock(lock_path, offset):
            p = Path(counter)
            value = int(p.read_text())
            time.sleep(0.0005)  # widen the race window
            p.write_text(str(value + 1))


@pytest.mark.parametrize("offset, n_procs", [(0, 4), (2**58, 3)], ids=["byte-0", "far-byte"])
def test_processes_do_not_lose_increments(tmp_path: Path, offset: int, n_procs: int) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(str(tmp_path / "l.lock"), str(counter), 40, offset))
             for _ in range(n_procs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert int(counter.read_text()) == 40 * n_procs


def test_threads_do_not_lose_increments(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    threads = [threading.Thread(target=_increment, args=(str(tmp_path / "l.lock"), str(counter), 40)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(counter.read_text()) == 160


def _take_and_report(lock_path: str, offset: int, done: str) -> None:
    with FileLock(lock_path, offset):
        Path(done).write_text(str(time.monotonic()))


@needs_ofd
def test_each_byte_is_its_own_lock_between_processes(tmp_path: Path) -> None:
    """A held byte blocks another process on that byte only; all locks share one empty file."""
    lock_path = str(tmp_path / ".zsaver.lock")
    ctx = mp.get_context("spawn")
    with FileLock(lock_path, 5):
        other = ctx.Process(target=_take_and_report, args=(lock_path, 6, str(tmp_path / "six")))
        other.start()
        other.join(timeout=30)
        assert other.exitcode == 0 and (tmp_path / "six").exists()  # byte 6 was free
        same = ctx.Process(target=_take_and_report, args=(lock_path, 5, str(tmp_path / "five")))
        same.start()
        time.sleep(1.0)  # ample time for a spawned child to start and try byte 5
        assert same.is_alive() and not (tmp_path / "five").exists()
        released_at = time.monotonic()
    same.join(timeout=30)
    assert same.exitcode == 0
    assert float((tmp_path / "five").read_text()) >= released_at
    assert sorted(os.listdir(tmp_path)) == [".zsaver.lock", "five", "six"]
    assert (tmp_path / ".zsaver.lock").stat().st_size == 0


def test_threads_on_different_bytes_do_not_wait_on_each_other(tmp_path: Path) -> None:
    lock_path = tmp_path / ".zsaver.lock"
    taken = threading.Event()

    def take_byte_two() -> None:
        with FileLock(lock_path, 2):
            taken.set()

    with FileLock(lock_path, 1):
        t = threading.Thread(target=take_byte_two)
        t.start()
        assert taken.wait(timeout=10)
        t.join()


def test_dataset_blocks_lie_past_the_stores_own_locks() -> None:
    bases = {dataset_lock_base(f"runs/{i}") for i in range(1000)}
    assert len(bases) == 1000
    assert min(bases) >= STORE_LOCK_SPAN and max(bases) + DATASET_LOCK_SPAN < 2**63
    assert all((b - STORE_LOCK_SPAN) % DATASET_LOCK_SPAN == 0 for b in bases)  # blocks never overlap


def test_a_negative_offset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="byte position >= 0, got -1"):
        FileLock(tmp_path / "x", -1)


def _hold(lock_path: str, offset: int, ready: str, release: str) -> None:
    with FileLock(lock_path, offset):
        Path(ready).touch()
        deadline = time.monotonic() + 30
        while not Path(release).exists() and time.monotonic() < deadline:
            time.sleep(0.01)


@needs_ofd
def test_releasing_one_lock_keeps_the_others_where_locks_belong_to_the_process(tmp_path, monkeypatch) -> None:
    # On file systems whose byte-range locks belong to the process (FUSE, some lock
    # managers), closing any descriptor of a file drops all the process's locks on it.
    # Each release closed its own descriptor, so releasing byte 6 freed byte 5 too.
    import zsaver._filelock as filelock

    monkeypatch.setattr(filelock, "_OFD_SETLKW", fcntl.F_SETLKW)  # process-owned locks
    monkeypatch.setattr(filelock, "_OFD_SETLK", fcntl.F_SETLK)
    lock_path = str(tmp_path / ".zsaver.lock")
    with FileLock(lock_path, 5):
        other = threading.Thread(target=lambda: FileLock(lock_path, 6).__enter__().release())
        other.start()
        other.join()
        probe = subprocess.run(
            [sys.executable, "-c",
             "import fcntl, os, struct, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n    fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack('@hhqqi0q', fcntl.F_WRLCK, 0, 5, 1, 0))\n"
             "except OSError:\n    print('locked')\nelse:\n    print('free')\n", lock_path],
            capture_output=True, text=True, check=True).stdout.strip()
        assert probe == "locked"


@needs_ofd
def test_a_lock_file_deleted_and_made_again_is_locked_anew(tmp_path) -> None:
    # The process keeps its lock file open; after someone deletes the file, a lock on
    # the old inode would exclude nobody who opens the path now.
    lock_path = tmp_path / ".zsaver.lock"
    with FileLock(lock_path, 3):
        pass  # the file is now open in this process
    lock_path.unlink()
    ready, release = tmp_path / "ready", tmp_path / "release"
    holder = mp.get_context("spawn").Process(target=_hold, args=(str(lock_path), 3, str(ready), str(release)))
    holder.start()
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and holder.is_alive()
            time.sleep(0.01)
        got = threading.Event()

        def take() -> None:
            with FileLock(lock_path, 3):
                got.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not got.wait(0.5)  # the holder's lock on the new file excludes us
        release.touch()
        assert got.wait(30)
        taker.join()
    finally:
        release.touch()
        holder.join()


@needs_ofd
def test_a_process_keeps_a_bounded_number_of_lock_files_open(tmp_path) -> None:
    from zsaver._filelock import MAX_IDLE_FILES

    before = len(os.listdir("/proc/self/fd"))
    for i in range(3 * MAX_IDLE_FILES):
        with FileLock(tmp_path / f"{i}.lock", 1):
            pass
    assert len(os.listdir("/proc/self/fd")) - before <= MAX_IDLE_FILES


def test_without_ofd_locks_each_byte_is_a_file_the_store_never_lists_nor_clears(tmp_path, monkeypatch) -> None:
    # The fallback's per-byte files sat at the store's root under names it did not
    # know: listed as keys, and deleted (while held) by zarr clearing the store.
    import zarr

    import zsaver._filelock as filelock
    from zsaver.stores import H5ShardStore

    monkeypatch.setattr(filelock, "_OFD_SETLKW", None)
    monkeypatch.setattr(filelock, "_OFD_SETLK", None)
    store = H5ShardStore(tmp_path / "s")
    zarr.create_array(store, name="a", shape=(8,), chunks=(2,), dtype="i4")[:] = 1
    store.consolidate()
    lock_dir = tmp_path / "s" / ".zsaver.lock.d"
    assert lock_dir.is_dir() and os.listdir(lock_dir)
    assert not [k for k in store.list_keys() if "lock" in k]
    held = dataset_lock_base("a")  # a saver's dataset lock (the store's own would deadlock the clear)
    with FileLock(tmp_path / "s" / ".zsaver.lock", held):
        zarr.open_group(store, mode="w")
        assert (lock_dir / str(held)).exists()


def test_spellings_of_one_dataset_path_share_its_locks() -> None:
    assert dataset_lock_base("runs//a") == dataset_lock_base("/runs/a/") == dataset_lock_base("runs/./a") \
        == dataset_lock_base("runs/a") != dataset_lock_base("runs/b")
