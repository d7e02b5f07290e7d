"""The one implementation behind every shard store: loose chunks, shards, locks, listing.

A chunk is written as a loose file at its key's path (temporary file, then
rename, as zarr's LocalStore does); :meth:`ShardedStoreBase.consolidate` moves
loose chunks into shard files by copy-on-write. Subclasses only pick a
container format (see ``_h5.py`` and ``_zip.py``); the layout is in ``docs/layout.md``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import stat
import threading
import uuid
import weakref
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from zsaver._config import validate_config
from zsaver._filelock import STORE_LOCK_SPAN, FileLock, lock_file
from zsaver.errors import StoreConfigError
from zsaver.stores._layout import (
    METADATA_NAMES,
    RESERVED_SUFFIXES,
    TEMP_SUFFIX,
    TOMBSTONE_SUFFIX,
    ArrayInfo,
    ShardLayout,
    normalize_chunks_per_shard,
    parse_array_metadata,
)
from zsaver.stores._listing import _NO_NODE, ShardListingMixin
from zsaver.stores._marker import (
    BOOKKEEPING,
    MARKER_NAME,
    create_json_once,
    read_json,
    refuse_unfinished_conversion,
)
from zsaver.stores._shard_cache import ShardContainer, ShardHandleCache, Signature, signature

_LOCK_STRIPES = 16  # locks per kind: shards share them (rare false sharing)
#: Where each kind's stripes start in the store's lock file (see zsaver._filelock).
_LOCK_KIND_BASE = {"consolidate": 0, "swap": _LOCK_STRIPES}
assert 2 * _LOCK_STRIPES <= STORE_LOCK_SPAN


@dataclass(frozen=True)
class ChunkRef:
    """A chunk key resolved to its array and its place in a shard."""

    key: str
    prefix: str  # the array's path ("" for a root array)
    info: ArrayInfo
    shard_rel: str  # shard path relative to the array directory
    member: str


def _slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[max(0, len(data) - byte_range.suffix) :]
    raise TypeError(f"Unexpected byte_range, got {byte_range}.")


def _create_exclusive(path: str, data: Any) -> bool:
    """Create ``path`` holding ``data`` atomically unless it exists; True if created."""
    tmp = _write_temp(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _is_reserved_name(key: str) -> bool:
    """Bookkeeping names at the root and temporary or tombstone suffixes: never zarr keys."""
    return key.endswith(RESERVED_SUFFIXES) or key.split("/", 1)[0] in BOOKKEEPING


def _read_file_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _loose_size(path: str) -> int | None:
    """Size of the regular file at ``path``, or None if there is none (a directory is none).

    A single ``stat``: checking first and reading the size after races with a
    consolidation removing the loose file it has just absorbed.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _drop_tombstone(path: str) -> None:
    """Remove the tombstone of the chunk at ``path``, if it has one."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path + TOMBSTONE_SUFFIX)


def _write_temp(path: str, data: Any, durable: bool = False) -> str:
    """Write ``data`` to a fresh temporary file next to ``path``; return its name.

    Creating the file first and the directory only on failure saves a syscall per
    chunk; retrying covers a consolidation removing an emptied directory meanwhile.
    ``durable`` fsyncs the file's content before it is closed.
    """
    tmp = f"{path}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
    for attempt in range(20):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileNotFoundError:
            if attempt == 19:
                raise
            # A consolidation may remove an emptied parent between makedirs' mkdirs: retry.
            with contextlib.suppress(FileNotFoundError):
                os.makedirs(os.path.dirname(tmp), exist_ok=True)
    try:
        with open(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


# Every live store, for the fork hook below (keyed by id: stores are unhashable).
_LIVE_STORES: weakref.WeakValueDictionary[int, ShardedStoreBase] = weakref.WeakValueDictionary()


def _drop_write_buffers_after_fork() -> None:
    """In a forked child, empty every store's ``write_direct`` buffer and renew its lock.

    The buffer is per process: the parent flushes its chunks itself, and a child
    flushing its inherited copy would write them, stale by then, over newer ones.
    The lock may be held by a parent thread, which does not exist in the child.
    """
    locks: dict[int, Any] = {}
    for store in list(_LIVE_STORES.values()):
        store._buffer.clear()  # in place: zarr's read-only views share the dict
        store._buffer_bytes = 0
        store._pending_deletes.clear()
        store._buffer_lock = locks.setdefault(id(store._buffer_lock), threading.RLock())


os.register_at_fork(after_in_child=_drop_write_buffers_after_fork)


class ShardedStoreBase(ShardListingMixin, Store):
    """A zarr store whose chunks end up grouped in shard files of one container format.

    Arguments (kept as attributes of the same names):
        root: the store directory (created unless ``read_only``).
        chunks_per_shard: chunks per shard along each axis; None entries or
            missing trailing axes mean all chunks along that axis. Default
            ``(64,)``, or whatever the directory's ``.zsaver-store.json`` records.
        read_only: refuse every write.
        write_direct: buffer chunks in memory and write them into their shards
            by copy-on-write at :meth:`flush` / :meth:`close` / :meth:`consolidate`
            (or when ``max_buffer_bytes`` is exceeded), instead of loose files;
            a flush also folds this process's deletions into their shards. The
            buffer is per process: a forked child starts with an empty one.
        max_open_shards: how many idle shard handles the LRU keeps open.
        max_buffer_bytes: ``write_direct`` buffer size that triggers a flush.

    Subclasses set :attr:`store_type` and implement :meth:`_make_container`.
    """

    store_type: ClassVar[str] = ""
    supports_writes: bool = True
    supports_deletes: bool = True
    supports_listing: bool = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        chunks_per_shard: int | tuple[int | None, ...] | None = None,
        read_only: bool = False,
        write_direct: bool = False,
        max_open_shards: int = 128,
        max_buffer_bytes: int = 256 * 2**20,
    ) -> None:
        super().__init__(read_only=read_only)
        if not isinstance(root, str | os.PathLike):
            raise TypeError(f"root must be a str or Path, got {type(root).__name__}")
        normalize_chunks_per_shard(chunks_per_shard)  # fail before touching the disk
        if int(max_open_shards) < 1:
            raise StoreConfigError(f"max_open_shards must be >= 1, got {max_open_shards!r}")
        self.root = Path(root)
        self.chunks_per_shard = chunks_per_shard
        self.write_direct = bool(write_direct)
        self.max_open_shards = int(max_open_shards)
        self.max_buffer_bytes = int(max_buffer_bytes)
        self._init_runtime()

    # ---------------------------------------------------------------- options
    def _options(self) -> dict[str, Any]:
        """Constructor keyword arguments (besides root and read_only)."""
        return {
            "chunks_per_shard": self.chunks_per_shard,
            "write_direct": self.write_direct,
            "max_open_shards": self.max_open_shards,
            "max_buffer_bytes": self.max_buffer_bytes,
        }

    def _make_container(self) -> ShardContainer:
        raise NotImplementedError

    def _wanted_layout(self) -> dict[str, Any] | None:
        """Layout options the caller asked for (None: take the directory's)."""
        if self.chunks_per_shard is None:
            return None
        return {"layout": "sharded",
                "chunks_per_shard": list(normalize_chunks_per_shard(self.chunks_per_shard))}

    def _default_layout(self) -> dict[str, Any]:
        return {"layout": "sharded", "chunks_per_shard": list(normalize_chunks_per_shard(None))}

    def _build_layout(self, doc: dict[str, Any]) -> ShardLayout:
        cps = tuple(doc.get("chunks_per_shard") or ())
        return ShardLayout(cps, self._container.suffix, doc.get("layout", "sharded"),
                           int(doc.get("consolidate_depth") or 1))

    # ---------------------------------------------------------------- lifecycle
    def _init_runtime(self) -> None:
        self._root = os.fspath(self.root)
        self._container = self._make_container()
        self._cache = ShardHandleCache(self._container, self.max_open_shards)
        self._arrays: dict[str, tuple[Signature, ArrayInfo | None]] = {}
        self._buffer: dict[str, tuple[ChunkRef, bytes]] = {}
        self._buffer_bytes = 0
        self._buffer_lock = threading.RLock()
        # write_direct deletions of chunks inside shards: tombstoned now (so they
        # hold across a SIGKILL), folded into their shards at the next flush.
        self._pending_deletes: dict[str, ChunkRef] = {}
        self._open_lock = threading.Lock()
        self._layout: ShardLayout | None = None
        self._allow_journal = False  # convert() opens stores mid-conversion
        _LIVE_STORES[id(self)] = self

    def __getstate__(self) -> dict[str, Any]:
        # Small and handle-free: a worker reopens lazily. Unflushed write_direct
        # chunks stay with the original object.
        return {"root": self.root, "read_only": self._read_only, **self._options()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.__init__(state.pop("root"), **state)  # type: ignore[misc]

    def with_read_only(self, read_only: bool = False) -> Self:
        """A copy of the store with another ``read_only``, reading through this one's shard handles.

        zarr makes one per ``open_array(store, mode="r")``: sharing the bounded
        handle cache keeps that from opening every shard again.
        """
        copy = type(self)(self.root, read_only=read_only, **self._options())
        copy._cache = self._cache
        if self.write_direct:  # the copy (zarr's mode="r") sees chunks not flushed yet
            copy._buffer, copy._buffer_lock = self._buffer, self._buffer_lock
            copy._pending_deletes = self._pending_deletes
        return copy

    def to_config(self) -> dict[str, Any]:
        """JSON-ready config: the constructor arguments (``"type": "<store_type>_shard"``).

        Unflushed ``write_direct`` chunks are data, not config: flush before
        handing the config to another process.

        Example:
            >>> import tempfile, zsaver
            >>> from zsaver.stores import ZipShardStore
            >>> store = ZipShardStore(tempfile.mkdtemp(), chunks_per_shard=8)
            >>> zsaver.from_config(store.to_config()) == store
            True
        """
        options = self._options()
        if isinstance(options["chunks_per_shard"], tuple):
            options["chunks_per_shard"] = list(options["chunks_per_shard"])
        # "_shard" keeps the names apart from zarr's own stores ("zip" is zarr's ZipStore).
        return validate_config(
            {"type": f"{self.store_type}_shard", "root": str(self.root),
             "read_only": self.read_only, **options}
        )

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.root == other.root  # type: ignore[attr-defined]
            and self._options() == other._options()  # type: ignore[attr-defined]
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}('file://{self.root.as_posix()}')"

    __str__ = __repr__

    async def _open(self) -> None:
        if self._is_open:
            raise ValueError("store is already open")
        self._ensure_open_sync()

    def _ensure_open_sync(self) -> None:
        if self._is_open:
            return
        with self._open_lock:
            if self._is_open:
                return
            if not self.read_only:
                self.root.mkdir(parents=True, exist_ok=True)
            if not self.root.is_dir():
                raise FileNotFoundError(f"{self.root} does not exist")
            self._layout = self._build_layout(self._resolve_marker())
            self._is_open = True

    def _resolve_marker(self) -> dict[str, Any]:
        if not self._allow_journal:
            refuse_unfinished_conversion(self.root)
        wanted = self._wanted_layout()
        marker = read_json(self.root / MARKER_NAME)
        if marker is None:
            doc = {"zsaver_store": 1, "container": self.store_type,
                   **(wanted or self._default_layout())}
            if self.read_only:
                return doc
            marker = create_json_once(self.root / MARKER_NAME, doc)
        if marker.get("container") != self.store_type:
            raise StoreConfigError(
                f"{self.root} holds a {marker.get('container')!r} store, not {self.store_type!r}; "
                "open it with the matching store class or zsaver.stores.open_store"
            )
        if wanted is not None and any(marker.get(k) != v for k, v in wanted.items()):
            got = {k: marker.get(k) for k in wanted}
            raise StoreConfigError(f"{self.root} was written with {got}, but {wanted} was asked for")
        return marker

    def close(self) -> None:
        """Flush buffered chunks (``write_direct``), close shard handles, mark closed."""
        if self._is_open and not self.read_only:
            self.flush()
        self._cache.close_all()
        super().close()

    # ---------------------------------------------------------------- key routing
    def _path(self, rel: str) -> str:
        return os.path.join(self._root, rel) if rel else self._root

    def _array_info(self, prefix: str) -> Any:
        """ArrayInfo of the array at ``prefix``; None for a group; _NO_NODE if neither."""
        base = self._path(prefix)
        for name in ("zarr.json", ".zarray", ".zgroup"):
            path = os.path.join(base, name)
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            sig = signature(st)
            cached = self._arrays.get(prefix)
            if cached is not None and cached[0] == sig:
                return cached[1]
            info = None
            if name != ".zgroup":
                try:
                    with open(path, "rb") as f:
                        info = parse_array_metadata(name, f.read())
                except FileNotFoundError:
                    continue
            self._arrays[prefix] = (sig, info)
            return info
        self._arrays.pop(prefix, None)
        return _NO_NODE

    def _owning_array(self, parts: list[str]) -> tuple[int, ArrayInfo] | None:
        """(depth of the array's path, its info) for a key split at ``/``, or None."""
        for i in range(len(parts) - 1, -1, -1):  # fast path: an array seen before
            prefix = "/".join(parts[:i])
            cached = self._arrays.get(prefix)
            if cached is not None and cached[1] is not None:
                info = self._array_info(prefix)
                if isinstance(info, ArrayInfo):
                    return i, info
                break
        for i in range(len(parts) - 1, -1, -1):
            info = self._array_info("/".join(parts[:i]))
            if info is _NO_NODE:
                continue
            return (i, info) if isinstance(info, ArrayInfo) else None
        return None

    def _chunk_ref(self, key: str) -> ChunkRef | None:
        """Where chunk ``key`` belongs in a shard, or None for any other key."""
        parts = key.split("/")
        if parts[-1] in METADATA_NAMES:
            return None
        found = self._owning_array(parts)
        if found is None:
            return None
        depth, info = found
        coords = info.coords_of("/".join(parts[depth:]))
        if coords is None:
            return None
        assert self._layout is not None
        where = self._layout.locate(coords, info.ndim)
        if where is None:
            return None
        return ChunkRef(key, "/".join(parts[:depth]), info, where[0], where[1])

    def _is_store_file(self, key: str) -> bool:
        """Whether ``key`` names one of the store's own files (never a zarr key)."""
        if _is_reserved_name(key):
            return True
        if not key.endswith(self._container.suffix):
            return False
        parts = key.split("/")
        found = self._owning_array(parts)
        assert self._layout is not None
        return found is not None and self._layout.is_shard_path("/".join(parts[found[0]:]), found[1].ndim)

    def _shard_path(self, ref: ChunkRef) -> str:
        return os.path.join(self._path(ref.prefix), ref.shard_rel)

    def _lock(self, kind: str, prefix: str, shard_rel: str) -> FileLock:
        # crc32, not hash(): every process must pick the same stripe
        return self._stripe_lock(kind, zlib.crc32(f"{prefix}/{shard_rel}".encode()) % _LOCK_STRIPES)

    def _stripe_lock(self, kind: str, stripe: int) -> FileLock:
        return FileLock(lock_file(self._root), _LOCK_KIND_BASE[kind] + stripe)

    @contextlib.contextmanager
    def _no_consolidation(self) -> Iterator[None]:
        """Hold every consolidation lock (in a fixed order): no shard is rewritten meanwhile."""
        with contextlib.ExitStack() as held:
            for stripe in range(_LOCK_STRIPES):
                held.enter_context(self._stripe_lock("consolidate", stripe))
            yield

    def _consolidation_lock(self, prefix: str, shard_rel: str) -> FileLock:
        """Held for a whole shard rewrite (and by deletes of its chunks)."""
        return self._lock("consolidate", prefix, shard_rel)

    def _swap_lock(self, prefix: str, shard_rel: str) -> FileLock:
        """Held briefly: by a writer renaming a loose chunk in place, by consolidation
        removing the loose files it has absorbed (so it never removes a newer one)."""
        return self._lock("swap", prefix, shard_rel)

    def _check_key(self, key: str) -> None:
        """Refuse a key that is not a str or that names one of the store's own files."""
        if not isinstance(key, str):
            raise TypeError(f"keys must be str, got {type(key).__name__}")
        if _is_reserved_name(key):
            raise ValueError(f"key {key!r} is reserved for the store's own files")
        if self._is_store_file(key):  # a shard: writing it would replace all its chunks
            raise ValueError(f"key {key!r} names one of the store's own files, not a zarr key")

    # ---------------------------------------------------------------- sync API
    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """The value at ``key`` (optionally a byte range of it), or None."""
        data = self._get_bytes_or_none(key, byte_range)
        if data is None:
            return None
        return (prototype or default_buffer_prototype()).buffer.from_bytes(data)

    def _get_bytes_or_none(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        self._ensure_open_sync()
        _slice(b"", byte_range)  # reject a malformed byte_range before any I/O
        if self._is_store_file(key):
            return None
        if self._buffer:
            with self._buffer_lock:
                entry = self._buffer.get(key)
            if entry is not None:
                return _slice(entry[1], byte_range)
        data = _read_file_or_none(self._path(key))  # a loose file wins over the shard copy
        if data is not None:
            return _slice(data, byte_range)
        ref = self._chunk_ref(key)
        if ref is None:
            return None
        data = self._read_shard_member(ref)
        if data is None:
            return None
        # A writer may have put a loose file in place and dropped a tombstone between
        # our two checks; then the shard copy read above is a deleted value.
        loose = _read_file_or_none(self._path(key))
        return _slice(data if loose is None else loose, byte_range)

    def _read_shard_member(self, ref: ChunkRef) -> bytes | None:
        # Order matters: loose file (checked by the caller), tombstone, then shard.
        # Consolidation renames the new shard in before removing either.
        if os.path.exists(self._path(ref.key) + TOMBSTONE_SUFFIX):
            return None
        handle = self._cache.acquire(self._shard_path(ref))
        if handle is None:
            return None
        try:
            return handle.read(ref.member)
        finally:
            self._cache.release(handle)

    def set_sync(self, key: str, value: Buffer) -> None:
        """Store ``value`` at ``key``: a loose file, or the write_direct buffer."""
        self._set_bytes(key, self._writable_bytes(key, value))

    def _writable_bytes(self, key: str, value: Buffer) -> Any:
        """The bytes of ``value`` once the store, ``key`` and ``value`` are checked for a write."""
        self._ensure_open_sync()
        self._check_writable()
        self._check_key(key)
        if not isinstance(value, Buffer):
            raise TypeError(f"value must be a zarr Buffer, got {type(value).__name__}")
        return value.as_buffer_like()

    def _set_bytes(self, key: str, data: Any) -> None:
        ref = self._chunk_ref(key)
        path = self._path(key)
        if ref is None:
            os.replace(_write_temp(path, data), path)
            self._forget_metadata(key)
            return
        if self.write_direct:
            self._buffer_put(ref, bytes(data))
            return
        tmp = _write_temp(path, data)
        with self._swap_lock(ref.prefix, ref.shard_rel):
            os.replace(tmp, path)
            _drop_tombstone(path)

    def set_if_not_exists_sync(self, key: str, value: Buffer) -> None:
        """Store ``value`` at ``key`` unless the key exists; atomic between processes.

        Metadata documents are created with ``link``, which fails if the name
        exists. A chunk is checked and written under its shard's swap lock, which
        every writer of a loose chunk and every consolidation also takes.
        """
        data = self._writable_bytes(key, value)
        ref = self._chunk_ref(key)
        if ref is None:
            if _create_exclusive(self._path(key), data):
                self._forget_metadata(key)
            return
        if self.write_direct:  # buffered in this process: atomic between its threads
            with self._buffer_lock:
                if self.exists_sync(key):
                    return
                full = self._buffer_add(ref, bytes(data))
            if full:
                self.flush()
            return
        with self._swap_lock(ref.prefix, ref.shard_rel):
            if not self.exists_sync(key):
                path = self._path(key)
                _create_exclusive(path, data)
                _drop_tombstone(path)

    def _forget_metadata(self, key: str) -> None:
        """Drop what is cached of the array whose metadata document ``key`` changed."""
        if key.rsplit("/", 1)[-1] in METADATA_NAMES:
            self._arrays.pop(key.rpartition("/")[0], None)

    def delete_sync(self, key: str) -> None:
        """Remove ``key``; a chunk in a shard is tombstoned until consolidation (or flush)."""
        self._ensure_open_sync()
        self._check_writable()
        self._check_key(key)
        path = self._path(key)
        if os.path.isdir(path):
            self._delete_prefix(key.rstrip("/") + "/")
            return
        ref = self._chunk_ref(key)
        if ref is None:
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):
                pass
            self._arrays.pop(key.rpartition("/")[0], None)
            return
        # The buffer lock stays held, so a flush in another thread cannot write the
        # buffered value into the shard after this delete decided it needs no tombstone.
        with self._buffer_lock, self._consolidation_lock(ref.prefix, ref.shard_rel), \
                self._swap_lock(ref.prefix, ref.shard_rel):
            entry = self._buffer.pop(key, None)
            if entry is not None:
                self._buffer_bytes -= len(entry[1])
            handle = self._cache.acquire(self._shard_path(ref))
            in_shard = handle is not None and ref.member in handle.index
            if handle is not None:
                self._cache.release(handle)
            if in_shard:  # tombstone first: a crash between the two leaves the loose file winning
                tomb = path + TOMBSTONE_SUFFIX
                os.replace(_write_temp(tomb, b""), tomb)
                if self.write_direct:  # no tombstone outlives the next flush
                    self._pending_deletes[key] = ref
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def exists_sync(self, key: str) -> bool:
        self._ensure_open_sync()
        if self._is_store_file(key):
            return False
        if self._buffer and key in self._buffer:
            return True
        if _loose_size(self._path(key)) is not None:
            return True
        # Absorbed by a consolidation since: its new shard was renamed in before.
        ref = self._chunk_ref(key)
        if ref is None or os.path.exists(self._path(key) + TOMBSTONE_SUFFIX):
            return False
        handle = self._cache.acquire(self._shard_path(ref))
        if handle is None:
            return False
        try:
            return ref.member in handle.index
        finally:
            self._cache.release(handle)

    def getsize_sync(self, key: str) -> int:
        self._ensure_open_sync()
        if self._is_store_file(key):
            raise FileNotFoundError(key)
        entry = self._buffer.get(key) if self._buffer else None
        if entry is not None:
            return len(entry[1])
        path = self._path(key)
        size = _loose_size(path)  # one stat: the file may be absorbed into its shard meanwhile
        if size is not None:
            return size
        ref = self._chunk_ref(key)
        if ref is not None and not os.path.exists(path + TOMBSTONE_SUFFIX):
            handle = self._cache.acquire(self._shard_path(ref))
            if handle is not None:
                try:
                    found = handle.index.get(ref.member)
                    if found is not None:
                        size = found[1] if found[1] >= 0 else len(handle.read(ref.member) or b"")
                finally:
                    self._cache.release(handle)
                if size is not None:
                    # As in get_sync: a loose file written meanwhile replaces a deleted shard copy.
                    loose = _loose_size(path)
                    return size if loose is None else loose
        raise FileNotFoundError(key)

    # ---------------------------------------------------------------- write_direct buffer
    def _buffer_put(self, ref: ChunkRef, data: bytes) -> None:
        with self._buffer_lock:
            full = self._buffer_add(ref, data)
        if full:
            self.flush()

    def _buffer_add(self, ref: ChunkRef, data: bytes) -> bool:
        """Buffer a chunk (the caller holds the buffer lock); True when the buffer is full."""
        old = self._buffer.get(ref.key)
        self._buffer[ref.key] = (ref, data)
        self._buffer_bytes += len(data) - (len(old[1]) if old else 0)
        return self._buffer_bytes > self.max_buffer_bytes

    def flush(self) -> None:
        """Write buffered ``write_direct`` chunks and deletions into their shards (copy-on-write).

        Everything set or deleted before a flush returns survives a SIGKILL, and
        the deletions' tombstones are gone; a no-op without ``write_direct``.
        """
        # Held throughout: a set or delete of this process landing between the
        # snapshot and the shard rewrite would be undone by it.
        with self._buffer_lock:
            by_shard: dict[tuple[str, str], tuple[list[str], dict[str, bytes]]] = {}
            for key, ref in self._pending_deletes.items():
                by_shard.setdefault((ref.prefix, ref.shard_rel), ([], {}))[0].append(key)
            for key, (ref, data) in self._buffer.items():
                by_shard.setdefault((ref.prefix, ref.shard_rel), ([], {}))[1][key] = data
            for (prefix, shard_rel), (deleted, extra) in by_shard.items():
                # The rewrite leaves a member out only while its tombstone is still
                # there, so a chunk written again by anyone since then is kept.
                self._rewrite_shard(prefix, shard_rel, deleted, extra)
                for key in deleted:  # unchanged meanwhile: the lock is held
                    del self._pending_deletes[key]
                for key, data in extra.items():
                    del self._buffer[key]
                    self._buffer_bytes -= len(data)

    # ---------------------------------------------------------------- async API
    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        return await asyncio.to_thread(self.get_sync, key, prototype=prototype,
                                       byte_range=byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def set(self, key: str, value: Buffer) -> None:
        await asyncio.to_thread(self.set_sync, key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        await asyncio.to_thread(self.set_if_not_exists_sync, key, value)

    async def delete(self, key: str) -> None:
        self._check_writable()
        await asyncio.to_thread(self.delete_sync, key)

    async def delete_dir(self, prefix: str) -> None:
        self._ensure_open_sync()
        self._check_writable()
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        await asyncio.to_thread(self._delete_prefix, prefix)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.exists_sync, key)

    async def getsize(self, key: str) -> int:
        return await asyncio.to_thread(self.getsize_sync, key)

    async def list(self) -> AsyncIterator[str]:
        for key in await asyncio.to_thread(self.list_keys, ""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in await asyncio.to_thread(self.list_keys, prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        start = prefix + "/" if prefix else ""
        seen: set[str] = set()
        entries = await asyncio.to_thread(self._list_plain_dir, prefix)
        if entries is not None:  # outside arrays a directory holds no shards: cheap path
            for name in entries:
                yield name
            return
        for key in await asyncio.to_thread(self.list_keys, start):
            head = key[len(start) :].split("/", 1)[0]
            if head not in seen:
                seen.add(head)
                yield head

    # ---------------------------------------------------------------- consolidation
    def consolidate(
        self, *, workers: int | None = None, client: Any = None, progress: bool = False
    ) -> int:
        """Move loose chunks (and deletions) into their shards; return shards rewritten.

        Shards are processed in parallel: ``workers`` threads, or the tasks of a
        ``dask.distributed`` ``client`` when given. ``progress=True`` shows a tqdm bar.
        Safe to kill at any instant and to run again.

        Example:
            >>> store.consolidate(progress=False)  # doctest: +SKIP
            4
        """
        from zsaver.stores._consolidate import run_consolidation

        self._ensure_open_sync()
        self._check_writable()
        self.flush()
        return run_consolidation(self, workers=workers, client=client, progress=progress)

    def _rewrite_shard(
        self, prefix: str, shard_rel: str, keys: builtins.list[str], extra: dict[str, bytes] | None = None
    ) -> bool:
        """Copy-on-write of one shard: old members + loose chunks (+ ``extra``) - deletions.

        The new file is written under a temporary name, fsynced and renamed over the
        old one; only then are the absorbed loose files and tombstones removed.
        """
        from zsaver.stores._consolidate import rewrite_shard

        return rewrite_shard(self, prefix, shard_rel, keys, extra or {})
