"""HDF5 shard container: each chunk is a dataset of its raw bytes.

Datasets are contiguous and unfiltered, so after one pass over the file we know
each chunk's byte offset and read it with ``os.pread`` (no h5py on the hot path),
while plain h5py still reads every chunk (``f["3.0"][()].tobytes()``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import h5py
import numpy as np

from zsaver.errors import ShardCorruptionError

#: Member index entry: (byte offset in the file or -1 if not directly readable, length).
IndexEntry = tuple[int, int]


class H5Container:
    """Reads and writes ``.h5`` shards.

    ``scalar_members=True`` writes each chunk as a scalar opaque dataset (the
    zarr 2 H5_Nested_Store convention) instead of a 1-D uint8 dataset.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "s.h5")
        >>> H5Container().write(p, [("0.0", b"abc")])
        >>> H5Container().read_member(p, "0.0")
        b'abc'
    """

    suffix = ".h5"

    def __init__(self, *, scalar_members: bool = False) -> None:
        self.scalar_members = scalar_members

    def read_index(self, path: str) -> dict[str, IndexEntry]:
        index: dict[str, IndexEntry] = {}
        try:
            with h5py.File(path, "r", locking=False) as f:

                def visit(name: str, obj: object) -> None:
                    if isinstance(obj, h5py.Dataset):
                        index[name] = _entry(obj)

                f.visititems(visit)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ShardCorruptionError(f"cannot read HDF5 shard {path}: {exc}") from exc
        return index

    def read_member(self, path: str, name: str) -> bytes:
        with h5py.File(path, "r", locking=False) as f:
            value = f[name][()]
        return np.asarray(value).tobytes() if not isinstance(value, bytes) else value

    def write(self, path: str, members: Iterable[tuple[str, bytes | memoryview]]) -> None:
        """Write a complete new shard at ``path`` and fsync it."""
        with h5py.File(path, "w", locking=False, libver="latest") as f:
            for name, data in members:
                if self.scalar_members and len(data):  # opaque types cannot be empty
                    f.create_dataset(name, data=np.void(bytes(data)))
                else:
                    f.create_dataset(name, data=np.frombuffer(data, dtype=np.uint8))
        _fsync_path(path)


def _entry(ds: h5py.Dataset) -> IndexEntry:
    length = int(ds.id.get_storage_size())
    offset = ds.id.get_offset()
    plain = ds.compression is None and ds.chunks is None and not ds.dtype.hasobject
    if offset is None or not plain:
        return (-1 if length else 0, length if plain else -1)
    return int(offset), length


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
