from __future__ import annotations

import pytest

from zsaver.stores import H5ShardStore, ZipShardStore


@pytest.fixture(params=[H5ShardStore, ZipShardStore], ids=["h5", "zip"])
def store_cls(request: pytest.FixtureRequest) -> type:
    return request.param
