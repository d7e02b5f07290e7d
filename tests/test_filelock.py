"""FileLock excludes other processes and other threads, byte by byte of one lock file."""

import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import pytest

from zsaver._filelock import DATASET_LOCK_SPAN, STORE_LOCK_SPAN, FileLock, dataset_lock_base


def _increment(lock_path: str, counter: str, n: int, offset: int = 0) -> None:
    for _ in range(n):
        with FileLock(lock_path, offset):
            p = Path(counter)
            value = int(p.read_text())
            time.sleep(0.0005)  # widen the race window
            p.write_text(str(value + 1))


def test_processes_do_not_lose_increments(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(str(tmp_path / "l.lock"), str(counter), 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert int(counter.read_text()) == 160


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


def test_processes_on_a_shared_offset_do_not_lose_increments(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(str(tmp_path / "l.lock"), str(counter), 40, 2**58))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert int(counter.read_text()) == 120


def test_dataset_blocks_lie_past_the_stores_own_locks() -> None:
    bases = {dataset_lock_base(f"runs/{i}") for i in range(1000)}
    assert len(bases) == 1000
    assert min(bases) >= STORE_LOCK_SPAN and max(bases) + DATASET_LOCK_SPAN < 2**63
    assert all((b - STORE_LOCK_SPAN) % DATASET_LOCK_SPAN == 0 for b in bases)  # blocks never overlap


def test_a_negative_offset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="byte position >= 0, got -1"):
        FileLock(tmp_path / "x", -1)
