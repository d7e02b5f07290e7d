"""Open whatever store lives at a path: a zip file or a plain zarr directory."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from zarr.abc.store import Store
from zarr.storage import LocalStore, ZipStore


def open_store(path: str | os.PathLike[str], *, read_only: bool = True) -> Store:
    """The store at ``path``, chosen by what is on disk.

    A ``.zip`` file opens as zarr's ZipStore, a directory as a LocalStore.

    Example:
        >>> import tempfile
        >>> open_store(tempfile.mkdtemp()).supports_listing
        True
    """
    p = Path(path)
    if p.is_file():
        if not zipfile.is_zipfile(p):
            raise ValueError(f"expected a zarr directory or a zip file, got a file of another kind: {p}")
        return ZipStore(p, mode="r" if read_only else "a", read_only=read_only)
    if p.is_dir():
        return LocalStore(p, read_only=read_only)
    raise FileNotFoundError(f"no store at {p}")
