"""Listing for shard stores: zarr keys from loose files, shard members and tombstones.

Kept apart from the read/write path in ``_sharded_base.py``; the methods here
only walk directories and shard indexes, they never change a shard.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from zsaver.stores._layout import (
    METADATA_NAMES,
    TEMP_SUFFIX,
    TOMBSTONE_SUFFIX,
    ArrayInfo,
    ShardLayout,
)
from zsaver.stores._marker import BOOKKEEPING
from zsaver.stores._shard_cache import ShardHandleCache, Signature

if TYPE_CHECKING:
    from zsaver.stores._sharded_base import ChunkRef

_NO_NODE = object()  # no metadata document at a prefix (as opposed to a group's)

#: A temporary file this old was left by a killed writer: a live one exists for
#: the milliseconds between its creation and its rename.
STALE_TEMP_SECONDS = 3600.0


def _remove_if_stale(path: str) -> None:
    try:
        if time.time() - os.stat(path).st_mtime > STALE_TEMP_SECONDS:
            os.unlink(path)
    except FileNotFoundError:
        pass


def walk_keys(root: str, top: str | None = None) -> Iterator[tuple[str, str, str]]:
    """(directory path, file name, key relative to ``root``) of every file below ``top``.

    ``top`` defaults to ``root``; the store's bookkeeping (marker, journal, lock
    directory) at the root is skipped, so only zarr keys and shard files come out.
    """
    for dirpath, dirnames, filenames in os.walk(top or root):
        rel_dir = _dir_key(root, dirpath)
        if rel_dir == "":
            dirnames[:] = [d for d in dirnames if d not in BOOKKEEPING]
        for name in filenames:
            if rel_dir == "" and name in BOOKKEEPING:
                continue
            yield dirpath, name, f"{rel_dir}/{name}" if rel_dir else name


def _dir_key(root: str, dirpath: str) -> str:
    """The key prefix of directory ``dirpath`` below ``root`` ("" for the root itself)."""
    rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
    return "" if rel_dir == "." else rel_dir


def _note_dir(walked: set[str], top: str, dirpath: str) -> None:
    """Add ``dirpath`` and its parents up to ``top`` (where the walk began) to ``walked``."""
    while dirpath not in walked:
        walked.add(dirpath)
        parent = os.path.dirname(dirpath)
        if os.path.normpath(dirpath) == os.path.normpath(top) or parent == dirpath:
            return
        dirpath = parent


class ShardListingMixin:
    """Key listing, prefix deletion and the consolidation plan of a shard store.

    Mixed into :class:`ShardedStoreBase`, which provides the attributes and the
    key-routing methods (``_path``, ``_array_info``, ``_chunk_ref``) and the lock
    ``_no_consolidation`` used here.
    """

    _root: str
    _buffer: dict[str, Any]
    _buffer_bytes: int
    _pending_deletes: dict[str, Any]
    _layout: ShardLayout | None
    _cache: ShardHandleCache
    _arrays: dict[str, tuple[Signature, ArrayInfo | None]]
    _buffer_lock: threading.RLock

    if TYPE_CHECKING:  # provided by ShardedStoreBase

        def _path(self, rel: str) -> str: ...
        def _array_info(self, prefix: str) -> Any: ...
        def _chunk_ref(self, key: str) -> ChunkRef | None: ...
        def _no_consolidation(self) -> AbstractContextManager[None]: ...
        def delete_sync(self, key: str) -> None: ...
        def _ensure_open_sync(self) -> None: ...

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix``, chunks inside shards included, sorted."""
        loose, in_shards = self._scan(prefix)
        return sorted(loose | in_shards)

    def count_chunks(self, prefix: str = "") -> dict[str, int]:
        """How many chunk keys under ``prefix`` are loose files and how many live only in shards.

        Example:
            >>> store.count_chunks("run/a/")  # doctest: +SKIP
            {'loose': 3, 'in_shards': 128}
        """
        loose, in_shards = self._scan(prefix)
        loose_chunks = sum(1 for k in loose if self._chunk_ref(k) is not None)
        return {"loose": loose_chunks, "in_shards": len(in_shards - loose)}

    def _scan(self, prefix: str) -> tuple[set[str], set[str]]:
        """(loose keys, keys inside shards and not deleted), both starting with ``prefix``.

        Every loose file is collected first; then the directories walked are
        listed again for shard files, and the shard indexes are read only after
        that. Consolidation renames a shard in (a new one included) before it
        removes the loose files it absorbed, so a chunk the walk missed (absorbed
        meanwhile) is in a shard found afterwards: a chunk that exists for the
        whole listing is always listed, even while other processes consolidate.
        """
        self._ensure_open_sync()
        base = self._walk_base(prefix)
        loose: set[str] = set()
        in_shards: set[str] = set()
        tombstones: set[str] = set()
        shard_files: set[str] = set()
        top = self._path(base)
        walked: set[str] = set()  # the directories with files below them
        for dirpath, name, key in walk_keys(self._root, top):
            _note_dir(walked, top, dirpath)
            if name.endswith(TEMP_SUFFIX):
                continue
            if name.endswith(TOMBSTONE_SUFFIX):
                tombstones.add(key[: -len(TOMBSTONE_SUFFIX)])
            elif self._is_shard_file(key):
                shard_files.add(key)
            else:
                loose.add(key)
        shard_files.update(self._shard_files_in(walked))  # renamed in during the walk
        for key in shard_files:  # after the walk: see the docstring
            in_shards.update(self._shard_members(key) or ())
        if self._buffer:
            with self._buffer_lock:
                # chunks buffered by write_direct count as loose until flushed into their shard
                loose.update(self._buffer)
        in_shards -= tombstones
        return (
            {k for k in loose if k.startswith(prefix)},
            {k for k in in_shards if k.startswith(prefix)},
        )

    def _shard_files_in(self, walked: set[str]) -> Iterator[str]:
        """Keys of the shard files now in the directories ``walked``."""
        assert self._layout is not None
        for dirpath in walked:
            try:
                names = os.listdir(dirpath)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed meanwhile (an emptied chunk directory): no shard there
            rel_dir = _dir_key(self._root, dirpath)
            for name in names:
                key = f"{rel_dir}/{name}" if rel_dir else name
                if name.endswith(self._layout.suffix) and self._is_shard_file(key):
                    yield key

    def _list_plain_dir(self, prefix: str) -> list[str] | None:
        """Entries of directory ``prefix`` if it is neither an array nor inside one, else None.

        Only array directories hold shards, so elsewhere the listing is the
        directory's own, minus the store's bookkeeping files.
        """
        self._ensure_open_sync()
        parts = prefix.split("/") if prefix else []
        if any(isinstance(self._array_info("/".join(parts[:i])), ArrayInfo)
               for i in range(len(parts) + 1)):
            return None
        try:
            names = os.listdir(self._path(prefix))
        except (FileNotFoundError, NotADirectoryError):
            names = []
        entries = {n for n in names
                   if not n.endswith((TEMP_SUFFIX, TOMBSTONE_SUFFIX))
                   and not (prefix == "" and n in BOOKKEEPING)}
        if self._buffer:
            start = prefix + "/" if prefix else ""
            entries.update(k[len(start):].split("/", 1)[0] for k in list(self._buffer)
                           if k.startswith(start))
        return sorted(entries)

    def _walk_base(self, prefix: str) -> str:
        """The directory to walk for ``prefix``: its array's, if inside one (shards live there)."""
        parts = prefix.split("/")[:-1]  # the directory part; the rest is a name prefix
        for i in range(len(parts), -1, -1):
            if isinstance(self._array_info("/".join(parts[:i])), ArrayInfo):
                return "/".join(parts[:i])
        return "/".join(parts)

    def _shard_file_owner(self, file_key: str) -> tuple[str, str, ArrayInfo] | None:
        """(array path, shard path relative to it, array info) if ``file_key`` names a shard."""
        assert self._layout is not None
        if not file_key.endswith(self._layout.suffix):
            return None
        parts = file_key.split("/")
        for i in range(len(parts) - 1, -1, -1):
            prefix = "/".join(parts[:i])
            info = self._array_info(prefix)
            if info is _NO_NODE:
                continue
            if not isinstance(info, ArrayInfo):
                return None
            rel = "/".join(parts[i:])
            if not self._layout.is_shard_path(rel, info.ndim):
                return None
            return prefix, rel, info
        return None

    def _is_shard_file(self, file_key: str) -> bool:
        """Whether ``file_key`` names a shard file (its index is not read)."""
        return self._shard_file_owner(file_key) is not None

    def _shard_members(self, file_key: str) -> list[str] | None:
        """Chunk keys held by the shard file at ``file_key``, or None if it is not a shard."""
        assert self._layout is not None
        owner = self._shard_file_owner(file_key)
        if owner is None:
            return None
        prefix, rel, info = owner
        handle = self._cache.acquire(self._path(file_key))
        if handle is None:
            return []
        try:
            names = list(handle.index)
        finally:
            self._cache.release(handle)
        keys = []
        for member in names:
            coords = self._layout.member_coords(rel, member, info.ndim)
            if coords is not None:
                chunk = info.key_of(coords)
                keys.append(f"{prefix}/{chunk}" if prefix else chunk)
        return keys

    def _delete_prefix(self, prefix: str) -> None:
        """Delete every key under ``prefix`` (which ends with '/' or is '')."""
        parts = prefix.rstrip("/").split("/") if prefix else []
        inside_array = any(
            isinstance(self._array_info("/".join(parts[:i])), ArrayInfo) for i in range(len(parts))
        )
        if inside_array:  # shards hold keys of other prefixes too: delete key by key
            for key in self.list_keys(prefix):
                self.delete_sync(key)
            return
        with self._buffer_lock:
            for key in [k for k in self._buffer if k.startswith(prefix)]:
                self._buffer_bytes -= len(self._buffer.pop(key)[1])
            for key in [k for k in self._pending_deletes if k.startswith(prefix)]:
                del self._pending_deletes[key]  # their tombstones go with the directory
        target = self._path(prefix.rstrip("/"))
        # A consolidation in another process that has read a shard under ``target``
        # would otherwise write it back after the delete (into a new array there).
        with self._no_consolidation():
            if not prefix:
                for entry in os.listdir(target):
                    if entry not in BOOKKEEPING:
                        path = os.path.join(target, entry)
                        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
            elif os.path.isdir(target):
                shutil.rmtree(target)
        self._arrays.clear()
        self._cache.close_all()

    def _plan(self) -> dict[tuple[str, str], list[str]]:
        """Loose chunk keys and tombstoned keys, grouped by (array path, shard)."""
        plan: dict[tuple[str, str], list[str]] = {}
        for dirpath, name, key in walk_keys(self._root):
            if name.endswith(TEMP_SUFFIX):
                _remove_if_stale(os.path.join(dirpath, name))
                continue
            if name in METADATA_NAMES:
                continue
            key = key.removesuffix(TOMBSTONE_SUFFIX)
            ref = self._chunk_ref(key)
            if ref is not None:
                plan.setdefault((ref.prefix, ref.shard_rel), []).append(key)
        return plan

