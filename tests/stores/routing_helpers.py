"""Shared helpers for store tests."""

from __future__ import annotations

from zarr.abc.store import Store
from zarr.storage import MemoryStore


class MemoryShards:
    """A picklable shard factory keeping one MemoryStore per shard index, so tests can inspect them."""

    def __init__(self) -> None:
        self.stores: dict[tuple[int, ...], MemoryStore] = {}
        self.calls = 0

    def __call__(self, index: tuple[int, ...]) -> Store:
        self.calls += 1
        return self.stores.setdefault(tuple(index), MemoryStore())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemoryShards) and self.stores == other.stores

    __hash__ = None  # type: ignore[assignment]
