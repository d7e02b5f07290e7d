"""Item functions for task tests; module level so worker processes can unpickle them."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np

from zsaver import Task


def row_of(i: int) -> np.ndarray:
    return np.arange(4, dtype=np.float32) + 10 * i


def slow_row(i: int) -> np.ndarray:
    time.sleep(random.Random(i).uniform(0, 0.01))
    return row_of(i)


def fails_on_multiples_of_7(i: int) -> np.ndarray:
    if i % 7 == 3:
        raise ValueError(f"item {i} is unlucky")
    return row_of(i)


def fails_at(i: int, bad: int) -> np.ndarray:
    if i == bad:
        raise ValueError(f"item {i} is unlucky")
    return row_of(i)


class FlakyOnce(Task):
    """Fails the first attempt at each item whose index is odd; marks attempts as files."""

    def __init__(self, marks: Path) -> None:
        self.marks = marks

    def process_item(self, item: int, **kwargs: object) -> np.ndarray:
        mark = self.marks / f"{item}"
        if item % 2 and not mark.exists():
            mark.touch()
            raise OSError(f"transient failure at {item}")
        return row_of(item)


def dies_on_13(i: int) -> np.ndarray:
    if i == 13:
        os._exit(3)  # the worker process vanishes without a word
    return row_of(i)


def segfaults_on_5(i: int) -> np.ndarray:
    if i == 5:
        import ctypes
        import faulthandler

        faulthandler.disable()  # pytest's handler, inherited by the worker, would print a dump
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return row_of(i)


class CountingSetup(Task):
    """Writes a file per setup / teardown call, named after the process id."""

    def __init__(self, marks: Path) -> None:
        self.marks = marks

    def setup(self) -> None:
        (self.marks / f"setup.{os.getpid()}.{time.monotonic_ns()}").touch()

    def teardown(self) -> None:
        (self.marks / f"teardown.{os.getpid()}.{time.monotonic_ns()}").touch()

    def process_item(self, item: int, **kwargs: object) -> np.ndarray:
        return row_of(item) * kwargs.get("scale", 1)


class VectorSquare(Task):
    """Vectorised: squares a batch at once; an item equal to -1 makes the batch call fail."""

    def __init__(self) -> None:
        self.batch_calls = 0

    def process_items(self, items, **kwargs):  # type: ignore[no-untyped-def]
        self.batch_calls += 1
        if -1 in items:
            raise ValueError("negative item")
        arr = np.asarray(items, dtype=np.int64)
        return arr * arr


def zarr_saver(directory: Path, approach: str = "append", row_chunk: int = 16, **options: object):
    """A ZarrSaver on a LocalStore under ``directory``, ``row_chunk`` rows per chunk."""
    import zarr

    from zsaver import ZarrSaver

    return ZarrSaver(zarr.storage.LocalStore(directory), "result", approach=approach, chunks=row_chunk, **options)


def read_rows(saver) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Everything the saver has made durable, as one array."""
    if hasattr(saver, "read"):
        return saver.read()
    return saver.array[:]


def slice_logging_saver(directory: Path, approach: str = "append", row_chunk: int = 16):
    """A reference saver that notes, in ``directory/slices.log``, every row slice it updates."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from npy_saver import NpySaver

    class SliceLoggingSaver(NpySaver):
        def save(self, data, indices=None, **kwargs):  # type: ignore[no-untyped-def]
            if isinstance(indices, slice):
                with open(self.directory / "slices.log", "a") as log:
                    log.write(f"{os.getpid()} {indices.start} {indices.stop}\n")
            super().save(data, indices, **kwargs)

        def clone(self, approach=None):  # type: ignore[no-untyped-def]
            return slice_logging_saver(self.directory, approach or self.approach, self._row_chunk)

        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (slice_logging_saver, (self.directory, self.approach, self._row_chunk))

    return SliceLoggingSaver(directory, approach, row_chunk)


def odd_shape_at(i: int, odd: tuple[int, ...] = (4,), slow: tuple[int, ...] = ()) -> np.ndarray:
    """Rows of 4 values, 3 for the items in ``odd``; the items in ``slow`` take 0.3 s."""
    if i in slow:
        time.sleep(0.3)
    return np.zeros(3, dtype=np.float32) + i if i in odd else row_of(i)


def int_then_float(i: int, slow: tuple[int, ...] = ()) -> np.ndarray:
    """Items 0-9 give int64 rows, later ones float64; the items in ``slow`` take 0.5 s."""
    if i in slow:
        time.sleep(0.5)
    return np.array([i, i], dtype=np.int64 if i < 10 else np.float64)


def odd_value_at(i: int, odd: dict[int, object]) -> object:
    """A float per item, or ``odd[i]`` (text, None, ...) for the items in ``odd``."""
    return odd[i] if i in odd else float(i) / 4


class TwoArgumentError(Exception):
    """Like many libraries' errors: pickle cannot rebuild it (two required arguments)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


class SetupFails(Task):
    """setup() raises an error that cannot travel back from a worker process as itself."""

    def setup(self) -> None:
        raise TwoArgumentError(3, "no GPU")

    def process_item(self, item: int) -> np.ndarray:
        return row_of(item)
