"""Open whatever store lives at a path: a shard store, a zip file or a plain zarr directory."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from zarr.abc.store import Store
from zarr.storage import LocalStore, ZipStore

from zsaver.errors import StoreConfigError
from zsaver.stores._h5_store import H5ShardStore
from zsaver.stores._marker import MARKER_NAME, read_json, refuse_unfinished_conversion
from zsaver.stores._sharded_base import ShardedStoreBase
from zsaver.stores._zip_store import ZipShardStore

#: Shard store classes by the ``container`` their marker file records.
STORE_CLASSES: dict[str, type[ShardedStoreBase]] = {"h5": H5ShardStore, "zip": ZipShardStore}


def open_store(path: str | os.PathLike[str], *, read_only: bool = False, **kwargs: Any) -> Store:
    """The store at ``path``, chosen by what is on disk.

    A directory with a ``.zsaver-store.json`` marker opens with the shard store
    class and layout it records; any other directory is a plain zarr tree (a
    ``LocalStore``); a zip file opens as zarr's ``ZipStore``.

    Example:
        >>> import tempfile
        >>> type(open_store(tempfile.mkdtemp())).__name__
        'LocalStore'
    """
    root = Path(path)
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise StoreConfigError(f"expected a zarr directory or a zip file, got another kind of file: {root}")
        return ZipStore(root, mode="r" if read_only else "a", read_only=read_only)
    if not root.is_dir():
        raise FileNotFoundError(f"no store at {root}")
    # Also before the marker is written, or after it is removed (conversion to plain).
    refuse_unfinished_conversion(root)
    marker = read_json(root / MARKER_NAME)
    if marker is None:
        return LocalStore(root, read_only=read_only)
    cls = STORE_CLASSES.get(marker.get("container", ""))
    if cls is None:
        raise StoreConfigError(f"{root / MARKER_NAME} names an unknown store {marker!r}")
    if marker.get("layout") == "nested":
        kwargs = {"layout": "nested", "consolidate_depth": marker["consolidate_depth"], **kwargs}
    return cls(root, read_only=read_only, **kwargs)
