"""FileLock excludes other processes and other threads."""

import multiprocessing as mp
import threading
import time
from pathlib import Path

from zsaver._filelock import FileLock


def _increment(lock_path: str, counter: str, n: int) -> None:
    for _ in range(n):
        with FileLock(lock_path):
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
