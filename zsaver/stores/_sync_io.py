"""Blocking calls into any zarr Store: its own ``*_sync`` method, or zarr's event loop.

zarr's optional synchronous protocol (``get_sync``, ``set_sync``, ``delete_sync``)
spares a round trip through the event loop. Wrapper stores (ShardedStore,
LRUStoreCache) offer it whatever they wrap: a wrapped store without it is
called through ``zarr.core.sync.sync`` (so never from zarr's own loop thread).

Example:
    >>> import zarr
    >>> from zarr.core.buffer import default_buffer_prototype
    >>> store = zarr.storage.MemoryStore()
    >>> set_sync(store, "k", default_buffer_prototype().buffer.from_bytes(b"v"))
    >>> get_sync(store, "k").to_bytes()
    b'v'
"""

from __future__ import annotations

from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync


def ensure_open_sync(store: Store) -> None:
    """Open ``store`` if it is not open yet."""
    if not store._is_open:
        sync(store._ensure_open())


def get_sync(
    store: Store,
    key: str,
    prototype: BufferPrototype | None = None,
    byte_range: ByteRequest | None = None,
) -> Buffer | None:
    prototype = prototype or default_buffer_prototype()
    getter: Any = getattr(store, "get_sync", None)
    if callable(getter):
        return getter(key, prototype=prototype, byte_range=byte_range)
    return sync(store.get(key, prototype, byte_range))


def set_sync(store: Store, key: str, value: Buffer) -> None:
    setter: Any = getattr(store, "set_sync", None)
    if callable(setter):
        setter(key, value)
    else:
        sync(store.set(key, value))


def delete_sync(store: Store, key: str) -> None:
    deleter: Any = getattr(store, "delete_sync", None)
    if callable(deleter):
        deleter(key)
    else:
        sync(store.delete(key))


__all__ = ["delete_sync", "ensure_open_sync", "get_sync", "set_sync"]
