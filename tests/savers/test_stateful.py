"""Random sequences of save/append/update/flush/reopen against a numpy model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from saver_backends import Backend

from zsaver import Saver

ROW = (2,)
SETTINGS = settings(
    max_examples=30,
    stateful_step_count=20,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)


class SaverModel(RuleBasedStateMachine):
    """Drives one saver kind; the model is the array a reader should see after each flush."""

    kind = "zarr"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="zsaver-model-"))
        self.backend = Backend(self.kind, self.dir)
        self.model: np.ndarray | None = None  # what is durable after a flush
        self.pending: np.ndarray | None = None  # what the open session will have flushed
        self.session: Saver | None = None
        self.session_fresh = False  # overwrite: no save yet in this session
        self.counter = 0

    def teardown(self) -> None:
        if self.session is not None:
            self.session.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)

    def new_rows(self, n: int) -> np.ndarray:
        self.counter += n
        return np.arange(self.counter - n, self.counter, dtype=np.int32).repeat(2).reshape(n, *ROW)

    def saver(self, approach: str, **options: Any) -> Saver:
        return self.backend.saver(approach, name="m", chunks=3, fill_value=-1, **options)

    def check_disk(self) -> None:
        got = self.backend.read("m")
        if self.model is None:
            assert got is None or got.shape[0] == 0
        else:
            np.testing.assert_array_equal(got, self.model)

    # --- sessions -------------------------------------------------------------------

    @precondition(lambda self: self.session is None)
    @rule(approach=st.sampled_from(["append", "overwrite", "update"]))
    def start_session(self, approach: str) -> None:
        if approach == "update" and self.model is None:
            return
        self.session = self.saver(approach, allow_resize=True).__enter__()
        self.session_fresh = approach == "overwrite"
        self.pending = None if self.model is None else self.model.copy()

    @precondition(lambda self: self.session is not None)
    @rule()
    def end_session(self) -> None:
        assert self.session is not None
        self.session.__exit__(None, None, None)
        self.session = None
        self.model = self.pending
        self.check_disk()

    @precondition(lambda self: self.session is not None)
    @rule()
    def flush(self) -> None:
        assert self.session is not None
        self.session.flush()
        self.model = None if self.pending is None else self.pending.copy()
        self.check_disk()

    # --- saves ------------------------------------------------------------------------

    @rule(n=st.integers(0, 8), overwrite=st.booleans())
    def save_rows(self, n: int, overwrite: bool) -> None:
        data = self.new_rows(n)
        if self.session is None:
            self.saver("overwrite" if overwrite else "append").save(data)
            self.model = data if overwrite or self.model is None else np.concatenate([self.model, data])
            self.check_disk()
            return
        if self.session.approach == "update":
            return
        self.session.save(data)
        if self.pending is None or self.session_fresh:
            self.pending = data
        else:
            self.pending = np.concatenate([self.pending, data])
        self.session_fresh = False
        assert len(self.session) == len(self.pending)

    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        in_session = self.session is not None and self.session.approach == "update"
        base = self.pending if in_session else self.model
        if base is None or (self.session is not None and not in_session):
            return
        length = base.shape[0]
        grow = data.draw(st.integers(0, 4)) if data.draw(st.booleans()) else 0
        form = data.draw(st.sampled_from(["list", "int", "slice", "mask"]))
        single = form == "int" and length + grow > 0
        if single:
            indices: Any = data.draw(st.integers(-length, length + grow - 1))
            rows_at = np.array([indices + length if indices < 0 else indices])
        elif form == "slice":
            start = data.draw(st.integers(0, length + grow))
            indices = slice(start, data.draw(st.integers(start, length + grow)))
            rows_at = np.arange(length + grow)[indices]
        elif form == "mask" and length:
            indices = np.array(data.draw(st.lists(st.booleans(), min_size=length, max_size=length)))
            rows_at = np.flatnonzero(indices)
        else:
            positions = data.draw(st.lists(st.integers(0, length + grow - 1), unique=True, max_size=6)) if length + grow else []
            indices = np.array(positions, dtype=np.int64)
            rows_at = indices
        new = self.new_rows(len(rows_at))
        expected = base
        end = max([length, *(int(i) + 1 for i in rows_at)])
        if end > length:
            expected = np.concatenate([base, np.full((end - length, *ROW), -1, np.int32)])
        else:
            expected = base.copy()
        expected[rows_at] = new
        payload = new[0] if single else new
        if in_session:
            assert self.session is not None
            self.session.save(payload, indices=indices)
            self.pending = expected
        else:
            self.saver("update", allow_resize=True).save(payload, indices=indices)
            self.model = expected
            self.check_disk()

    @invariant()
    def durable_state_outside_sessions(self) -> None:
        if self.session is None:
            self.check_disk()


class ZarrSaverModel(SaverModel):
    kind = "zarr"


class HDF5SaverModel(SaverModel):
    kind = "hdf5"


TestZarrSaverModel = ZarrSaverModel.TestCase
TestZarrSaverModel.settings = SETTINGS
TestHDF5SaverModel = HDF5SaverModel.TestCase
TestHDF5SaverModel.settings = SETTINGS
