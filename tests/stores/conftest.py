from __future__ import annotations

import sys
from pathlib import Path

import pytest

from zsaver.stores import H5ShardStore, ZipShardStore

# Fixtures shared with the fault tests (tests/nested_trees.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(params=[H5ShardStore, ZipShardStore], ids=["h5", "zip"])
def store_cls(request: pytest.FixtureRequest) -> type:
    return request.param
