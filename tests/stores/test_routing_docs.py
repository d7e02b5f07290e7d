"""The examples in docs/routing.md and in the routing modules' docstrings run."""

from __future__ import annotations

import doctest
import re
import sys
import types
from pathlib import Path

import pytest

import zsaver._config
import zsaver.stores._configs
import zsaver.stores._lru_cache
import zsaver.stores._shard_factories
import zsaver.stores._sharded_store

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


def test_routing_guide_examples_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    # A real module, so pydantic can resolve the annotations of models the guide defines.
    module = types.ModuleType("routing_guide_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), module.__dict__)
    assert (tmp_path / "2024.zip").exists() and (tmp_path / "fast-disk" / "x-9").exists()


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
