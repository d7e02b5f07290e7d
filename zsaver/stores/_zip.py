"""Zip shard container: each chunk is a stored (uncompressed) member.

Stored members sit verbatim in the file, so once the local headers are parsed we
read a chunk with ``os.pread``; ``zipfile`` and ``unzip`` read the shards too.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Iterable

from zsaver.errors import ShardCorruptionError

IndexEntry = tuple[int, int]

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature ... name length, extra length
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # fixed stamps: identical content gives identical shards


class ZipContainer:
    """Reads and writes ``.zip`` shards.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "s.zip")
        >>> ZipContainer().write(p, [("0.0", b"abc")])
        >>> ZipContainer().read_member(p, "0.0")
        b'abc'
    """

    suffix = ".zip"

    def read_index(self, path: str) -> dict[str, IndexEntry]:
        index: dict[str, IndexEntry] = {}
        try:
            with open(path, "rb") as raw, zipfile.ZipFile(raw) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    if info.compress_type != zipfile.ZIP_STORED:
                        index[info.filename] = (-1, info.file_size)
                        continue
                    raw.seek(info.header_offset)
                    header = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
                    if header[0] != b"PK\x03\x04":
                        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
                    start = info.header_offset + _LOCAL_HEADER.size + header[-2] + header[-1]
                    index[info.filename] = (start, info.file_size)
        except (zipfile.BadZipFile, struct.error) as exc:
            raise ShardCorruptionError(f"cannot read zip shard {path}: {exc}") from exc
        return index

    def read_member(self, path: str, name: str) -> bytes:
        with zipfile.ZipFile(path) as zf:
            return zf.read(name)

    def write(self, path: str, members: Iterable[tuple[str, bytes | memoryview]]) -> None:
        """Write a complete new shard at ``path`` and fsync it."""
        with open(path, "wb") as raw:
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, data in members:
                    info = zipfile.ZipInfo(name, _FIXED_TIME)
                    zf.writestr(info, bytes(data) if isinstance(data, memoryview) else data)
            raw.flush()
            os.fsync(raw.fileno())
