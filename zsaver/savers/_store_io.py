"""Small blocking reads and writes of whole keys through a zarr Store.

Stores that offer zarr's synchronous methods (``get_sync``, ``set_sync``,
``delete_sync``: LocalStore, MemoryStore, zsaver's shard stores) are called
directly; others through zarr's event loop. A saver writes a few small keys at
every flush, and each event-loop round trip costs more than the write itself.

Example:
    >>> import zarr
    >>> store = zarr.storage.MemoryStore()
    >>> set_bytes(store, "a/b", b"x"); get_bytes(store, "a/b")
    b'x'
"""

from __future__ import annotations

from typing import Any

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync


def get_bytes(store: Store, key: str) -> bytes | None:
    """The value of ``key``, or None if there is none."""
    getter: Any = getattr(store, "get_sync", None)
    if callable(getter):
        buf = getter(key, prototype=default_buffer_prototype())
    else:
        buf = sync(store.get(key, prototype=default_buffer_prototype()))
    return None if buf is None else buf.to_bytes()


def set_bytes(store: Store, key: str, value: bytes) -> None:
    """Store ``value`` at ``key`` (atomically where the store writes atomically)."""
    buf = default_buffer_prototype().buffer.from_bytes(value)
    setter: Any = getattr(store, "set_sync", None)
    if callable(setter):
        setter(key, buf)
    else:
        sync(store.set(key, buf))


def delete_key(store: Store, key: str) -> None:
    """Delete ``key``; a missing key is no error."""
    deleter: Any = getattr(store, "delete_sync", None)
    if callable(deleter):
        deleter(key)
    else:
        sync(store.delete(key))


__all__ = ["delete_key", "get_bytes", "set_bytes"]
