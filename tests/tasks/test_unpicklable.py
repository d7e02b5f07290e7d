"""A task, item or result that cannot be pickled for a process pool fails promptly, naming it.

Each run happens in a subprocess with a timeout: the failure this guards
against was a run that hung forever in the process pool's shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

TIMEOUT_S = 120

# The task is defined in a module that claims to be ``__main__``: it pickles by
# reference as ``__main__.estimate``, which no worker process can look up.
TASK_IN_FAKE_MAIN = """
import sys, types
import numpy as np, zarr
from zsaver import TaskManager, ZarrSaver
from zsaver.errors import UnpicklableError

code = '''
import numpy as np
def estimate(seed):
    xy = np.random.default_rng(seed).random((1_000, 2))
    return np.array([4 * ((xy**2).sum(1) <= 1).mean()])
'''
mod = types.ModuleType("docs_example_tasks")
mod.__dict__["__name__"] = "__main__"
sys.modules["docs_example_tasks"] = mod
exec(code, mod.__dict__)
saver = ZarrSaver(zarr.storage.LocalStore("pi.zarr"), "pi", chunks=256)
try:
    TaskManager(mod.estimate, executor="processes", n_workers=2).submit_tasks(
        range(2_000), saver, save_interval=500, progress=False)
except UnpicklableError as exc:
    print("ERROR:", exc)
print("RECORD:", saver.read_record("tasks"))
"""

BAD_ITEM = """
import threading
import numpy as np, zarr
from zsaver import TaskManager, ZarrSaver
from zsaver.errors import UnpicklableError

def row(item):
    return np.full(3, item, dtype=np.float64)

items = list(range(95)) + [threading.Lock()] + list(range(96, 200))
saver = ZarrSaver(zarr.storage.LocalStore("s.zarr"), "r", chunks=10)
try:
    TaskManager(row, executor="processes", n_workers=2, batch_size=10).submit_tasks(
        items, saver, save_interval=20, progress=False, max_in_flight=1)
except UnpicklableError as exc:
    print("ERROR:", exc)
record = saver.read_record("tasks")
data = saver.array[:]
print("DONE:", record["items_done"], len(data))
assert (data == np.arange(len(data))[:, None]).all(), data
"""

BAD_RESULT = """
import threading
from zsaver import TaskManager
from zsaver.errors import UnpicklableError

def result(item):
    return threading.Lock() if item == 37 else item

try:
    TaskManager(result, executor="processes", n_workers=2, batch_size=10).submit_tasks(
        range(100), progress=False)
except UnpicklableError as exc:
    print("ERROR:", exc)
"""


def _run(script: str, cwd: Path) -> str:
    # A session of its own, so that a hang's worker processes are killed with it.
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)  # a hang fails instead of blocking
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return out


def test_task_that_cannot_be_pickled_fails_promptly_naming_it(tmp_path: Path) -> None:
    out = _run(TASK_IN_FAKE_MAIN, tmp_path)
    assert "ERROR: the task __main__.estimate" in out
    assert "cannot be pickled" in out
    assert "RECORD: None" in out  # refused before the completion record was written


def test_item_that_cannot_be_pickled_fails_after_checkpointing_finished_items(tmp_path: Path) -> None:
    out = _run(BAD_ITEM, tmp_path)
    assert "ERROR: one of items 90..99 cannot be pickled" in out
    # One batch in flight at a time: items 0..89 finished before the bad batch.
    assert "DONE: 90 90" in out


def test_result_that_cannot_be_pickled_fails_promptly_naming_its_items(tmp_path: Path) -> None:
    out = _run(BAD_RESULT, tmp_path)
    assert "ERROR: the results of items 30..39 cannot be pickled" in out
