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

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype

from zsaver.stores._sync_io import delete_sync, get_sync, set_sync


def get_bytes(store: Store, key: str) -> bytes | None:
    """The value of ``key``, or None if there is none."""
    buf = get_sync(store, key)
    return None if buf is None else buf.to_bytes()


def set_bytes(store: Store, key: str, value: bytes) -> None:
    """Store ``value`` at ``key`` (atomically where the store writes atomically)."""
    set_sync(store, key, default_buffer_prototype().buffer.from_bytes(value))


def delete_key(store: Store, key: str) -> None:
    """Delete ``key``; a missing key is no error."""
    delete_sync(store, key)


__all__ = ["delete_key", "get_bytes", "set_bytes"]
