"""The examples in the routing modules' docstrings run (docs/routing.md runs in tests/test_docs_examples.py)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import zsaver._config
import zsaver.stores._configs
import zsaver.stores._lru_cache
import zsaver.stores._shard_factories
import zsaver.stores._sharded_store


@pytest.mark.parametrize(
    "module",
    [
        zsaver._config,
        zsaver.stores._configs,
        zsaver.stores._lru_cache,
        zsaver.stores._shard_factories,
        zsaver.stores._sharded_store,
    ],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
