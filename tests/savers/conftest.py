"""Fixtures that make either saver on a fresh temporary store."""

from __future__ import annotations

from pathlib import Path

import pytest
from saver_backends import Backend


@pytest.fixture(params=["zarr", "hdf5"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)
