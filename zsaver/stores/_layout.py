"""Where a chunk lives: chunk-key parsing and the chunk -> shard file mapping.

A store sees only keys. To turn ``"data/c/3/0"`` into chunk coordinates it needs
the array's number of dimensions and chunk key encoding, which it reads from the
array's metadata document (``zarr.json`` or ``.zarray``); :class:`ArrayInfo`
holds what that document says. :class:`ShardLayout` then maps coordinates to a
shard file (relative to the array directory) and a member name inside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from zsaver.errors import StoreConfigError

#: Names of metadata documents; they are always plain files.
METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})
#: The documents that make a directory a zarr node (array or group), zarr 3 or 2.
NODE_DOCUMENTS = frozenset({"zarr.json", ".zarray", ".zgroup"})

#: Suffixes reserved for the store's own bookkeeping files (never zarr keys).
TEMP_SUFFIX = ".zsaver-partial"
TOMBSTONE_SUFFIX = ".zsaver-deleted"
RESERVED_SUFFIXES = (TEMP_SUFFIX, TOMBSTONE_SUFFIX)

#: Default grouping: 64 consecutive chunks along axis 0, every chunk of the other axes.
DEFAULT_CHUNKS_PER_SHARD: tuple[int | None, ...] = (64,)

# Canonical indices only: "01" or a non-ASCII digit would alias chunk 1 and be merged with it.
_INT = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class ArrayInfo:
    """What a store must know about an array to parse its chunk keys.

    ``encoding`` is ``"default"`` (zarr 3, keys ``c/1/2``) or ``"v2"`` (keys ``1.2``);
    ``separator`` is ``"/"`` or ``"."``.
    """

    ndim: int
    encoding: str
    separator: str

    def coords_of(self, rest: str) -> tuple[int, ...] | None:
        """Chunk coordinates of ``rest`` (the key below the array path), or None.

        >>> ArrayInfo(2, "default", "/").coords_of("c/3/0")
        (3, 0)
        >>> ArrayInfo(2, "v2", ".").coords_of("zarr.json") is None
        True
        """
        if self.encoding == "default":
            if rest == "c":
                return () if self.ndim == 0 else None
            if not rest.startswith("c" + self.separator):
                return None
            rest = rest[2:]
        elif self.ndim == 0:
            return () if rest == "0" else None
        parts = rest.split(self.separator)
        if len(parts) != self.ndim or not all(_INT.fullmatch(p) for p in parts):
            return None
        return tuple(int(p) for p in parts)

    def key_of(self, coords: Sequence[int]) -> str:
        """The key (below the array path) of the chunk at ``coords``.

        >>> ArrayInfo(2, "v2", ".").key_of((3, 0))
        '3.0'
        """
        if self.encoding == "default":
            return self.separator.join(["c", *map(str, coords)])
        return self.separator.join(map(str, coords)) if coords else "0"


def parse_array_metadata(name: str, document: bytes) -> ArrayInfo | None:
    """The :class:`ArrayInfo` of a metadata document, or None if it is not an array's."""
    try:
        meta = json.loads(document)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    try:
        if name == "zarr.json":
            if meta.get("node_type") != "array":
                return None
            ndim = len(meta["shape"])
            encoding = meta.get("chunk_key_encoding", {"name": "default"})
            kind = encoding.get("name", "default")
            sep = encoding.get("configuration", {}).get("separator")
            if kind == "default":
                return ArrayInfo(ndim, "default", sep or "/")
            if kind == "v2":
                return ArrayInfo(ndim, "v2", sep or ".")
            return None
        if name == ".zarray":
            return ArrayInfo(len(meta["shape"]), "v2", meta.get("dimension_separator") or ".")
    except (KeyError, TypeError, AttributeError):
        return None
    return None


def normalize_chunks_per_shard(
    value: int | Sequence[int | None] | None,
) -> tuple[int | None, ...]:
    """Validate ``chunks_per_shard``; missing trailing axes mean "all chunks".

    >>> normalize_chunks_per_shard(8)
    (8,)
    >>> normalize_chunks_per_shard(None)
    (64,)
    """
    if value is None:
        return DEFAULT_CHUNKS_PER_SHARD
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        spec = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise StoreConfigError(
            f"chunks_per_shard must be an int, a sequence of int/None, or None; got {value!r}"
        ) from None
    for n in spec:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise StoreConfigError(
                f"chunks_per_shard entries must be positive ints or None; got {value!r}"
            )
    return spec


@dataclass(frozen=True)
class ShardLayout:
    """Maps chunk coordinates of one array to (shard file, member name).

    ``kind="sharded"``: shard ``shard-<i>.<j>...<suffix>`` in the array directory,
    shard index ``chunk // chunks_per_shard`` per axis (0 where the entry is None),
    member ``"<i>.<j>..."`` (the chunk coordinates; ``"0"`` for 0-d arrays).

    ``kind="nested"`` (zarr 2 H5_Nested_Store, ``/`` keys): with depth ``d`` the
    last ``d-1`` indices joined by ``.`` name the member inside ``<index>.h5`` (the
    index before them); earlier indices are directories. Arrays of fewer than two
    dimensions are not grouped (their chunks stay plain files).

    >>> lay = ShardLayout((2,), ".h5")
    >>> lay.locate((5, 1), ndim=2)
    ('shard-2.0.h5', '5.1')
    >>> ShardLayout((), ".h5", kind="nested", depth=3).locate((4, 1, 2), ndim=3)
    ('4.h5', '1.2')
    """

    chunks_per_shard: tuple[int | None, ...]
    suffix: str
    kind: str = "sharded"
    depth: int = 1

    def locate(self, coords: Sequence[int], ndim: int) -> tuple[str, str] | None:
        """(shard path relative to the array directory, member name), or None if ungrouped."""
        if self.kind == "nested":
            if ndim < 2:
                return None
            split = max(ndim - self.depth, 0)
            dirs = [str(i) for i in coords[:split]]
            file = f"{coords[split]}{self.suffix}"
            member = ".".join(str(i) for i in coords[split + 1 :])
            return "/".join([*dirs, file]), member
        shard = []
        for axis, index in enumerate(coords):
            per = self.chunks_per_shard[axis] if axis < len(self.chunks_per_shard) else None
            shard.append(0 if per is None else index // per)
        name = "shard-" + ".".join(map(str, shard)) if shard else "shard"
        return name + self.suffix, (".".join(map(str, coords)) if coords else "0")

    def is_shard_path(self, rel: str, ndim: int) -> bool:
        """Whether ``rel`` (a file path relative to the array directory) names a shard."""
        if not rel.endswith(self.suffix):
            return False
        stem = rel[: -len(self.suffix)]
        if self.kind == "nested":
            parts = stem.split("/")
            return ndim >= 2 and len(parts) == max(ndim - self.depth, 0) + 1 and all(
                _INT.fullmatch(p) for p in parts
            )
        if ndim == 0:
            return stem == "shard"
        if not stem.startswith("shard-"):
            return False
        parts = stem[6:].split(".")
        return len(parts) == ndim and all(_INT.fullmatch(p) for p in parts)

    def member_coords(self, rel: str, member: str, ndim: int) -> tuple[int, ...] | None:
        """Chunk coordinates of ``member`` inside the shard at ``rel``, or None if foreign."""
        if self.kind == "nested":
            head = rel[: -len(self.suffix)].split("/")
            parts = head + (member.split(".") if member else [])
        else:
            if ndim == 0:
                return () if member == "0" else None
            parts = member.split(".")
        if len(parts) != ndim or not all(_INT.fullmatch(p) for p in parts):
            return None
        coords = tuple(int(p) for p in parts)
        # A member filed under the wrong shard would be a second copy elsewhere: ignore it.
        where = self.locate(coords, ndim)
        return coords if where is not None and where[0] == rel else None
