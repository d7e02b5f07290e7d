"""ZarrSaver: append, overwrite or update rows of a zarr array, fast and crash-safe.

Writes go through zarr's own array API (so every codec, shard layout and store
works); the saver adds what zarr 3 lacks for this job: staging, chunk-aligned
batched writes, row reservation and chunk locks between processes, and checks
that run before the first byte is written.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.array_spec import ArrayConfig
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from zsaver.errors import DatasetNotFoundError, DatasetSpecError, ShapeMismatchError
from zsaver.savers._chunk_writer import ChunkWriter
from zsaver.savers._locks import DatasetLocks
from zsaver.savers._records import read_store_record, write_store_record
from zsaver.savers._session import DatasetSpec, StagedSaver
from zsaver.savers._staging import ChunkUpdate
from zsaver.savers._store_io import delete_key, get_bytes, set_bytes
from zsaver.savers._validation import (
    check_chunks,
    check_options,
    default_row_chunk,
    is_int,
)

#: Options passed on to ``zarr.create_array`` when the saver creates the array.
CREATE_OPTIONS = frozenset(
    {
        "dtype",
        "chunks",
        "shards",
        "compressors",
        "filters",
        "serializer",
        "fill_value",
        "attributes",
        "zarr_format",
        "dimension_names",
    }
)
OPTIONS = CREATE_OPTIONS | {"shape", "allow_resize"}

#: Whole chunks are written in batches of about this many bytes (zarr encodes
#: and stores the chunks of one ``arr[a:b] = ...`` call concurrently).
WRITE_BATCH_BYTES = 32 << 20


def _resolve_store(store: Any) -> tuple[Store, str]:
    """(store, path prefix) for a path, a zarr Store or an open zarr Group."""
    if isinstance(store, (str, os.PathLike)):
        return zarr.storage.LocalStore(os.fspath(store)), ""
    if isinstance(store, zarr.Group):
        return store.store, store.path.strip("/")
    if isinstance(store, Store):
        return store, ""
    raise TypeError(
        f"store must be a path, a zarr Store or a zarr Group; got {type(store).__name__}"
    )


#: The stored metadata documents of an array, key -> bytes (None: no such key).
MetadataDocs = dict[str, bytes | None]


def _with_shape(arr: zarr.Array, shape: tuple[int, ...]) -> zarr.Array:
    """A handle on the same array with ``shape`` in memory only (nothing written).

    Built through zarr's own ``update_shape`` and constructor: newer zarr keeps
    state derived from the shape (the chunk grid) beside the metadata, so
    patching the shape of a copied handle would leave that state stale.
    """
    inner = arr.async_array
    resized = type(inner)(
        metadata=inner.metadata.update_shape(tuple(int(x) for x in shape)),
        store_path=inner.store_path,
        config=inner.config,
    )
    return zarr.Array(resized)


class _MetadataEncoder:
    """The metadata documents of an array as its shape changes (``zarr.json``; v2: two)."""

    def __init__(self, arr: zarr.Array) -> None:
        metadata = arr.async_array.metadata
        # v3: one JSON document in which only "shape" changes; encode the rest once.
        self._v3_doc = metadata.to_dict() if metadata.zarr_format == 3 else None

    def docs(self, arr: zarr.Array, shape: Sequence[int] | None = None) -> MetadataDocs:
        """The documents of ``arr``, or of ``arr`` with ``shape`` (v3 needs no new handle)."""
        metadata = arr.async_array.metadata
        if self._v3_doc is None:
            if shape is not None and tuple(shape) != tuple(metadata.shape):
                metadata = metadata.update_shape(tuple(shape))
            buffers = metadata.to_buffer_dict(default_buffer_prototype())
            return {key: None if buf is None else buf.to_bytes() for key, buf in buffers.items()}
        doc = dict(self._v3_doc, shape=list(metadata.shape if shape is None else shape))
        # Encoded as zarr encodes it (zarr.core.metadata.v3.ArrayV3Metadata.to_buffer_dict).
        text = json.dumps(doc, allow_nan=True, indent=zarr.config.get("json_indent"))
        return {"zarr.json": text.encode()}


def _metadata_docs(arr: zarr.Array) -> MetadataDocs:
    """The metadata documents zarr writes for ``arr``."""
    return _MetadataEncoder(arr).docs(arr)


def _key(arr: zarr.Array, name: str) -> str:
    path = arr.async_array.store_path.path
    return f"{path}/{name}" if path else name


def _read_docs(arr: zarr.Array, keys: Sequence[str]) -> MetadataDocs:
    """The metadata documents of ``arr`` as stored now."""
    store = arr.async_array.store_path.store
    return {key: get_bytes(store, _key(arr, key)) for key in keys}


def _store_docs(arr: zarr.Array, docs: MetadataDocs) -> None:
    store = arr.async_array.store_path.store
    for key, doc in docs.items():
        if doc is None:
            delete_key(store, _key(arr, key))
        else:
            set_bytes(store, _key(arr, key), doc)


def _save_shape(arr: zarr.Array, encoder: _MetadataEncoder) -> MetadataDocs:
    """Write the metadata of ``arr`` (its new shape); returns the documents written."""
    docs = encoder.docs(arr)
    _store_docs(arr, docs)
    return docs


def _append_rows(
    arr: zarr.Array,
    start: int,
    rows: np.ndarray,
    shape: tuple[int, ...],
    encoder: _MetadataEncoder,
    writer: ChunkWriter | None,
) -> tuple[MetadataDocs, zarr.Array | None, bytes | None]:
    """Write ``rows`` at ``start`` of ``arr``, then its new ``shape``.

    Returns the documents written, a handle with the new shape if one was
    needed (zarr wrote the rows; None otherwise), and, when ``writer`` wrote
    the chunks, the stored bytes of the last one. Data first, shape last: a
    crash in between leaves the old shape.
    """
    docs = encoder.docs(arr, shape)
    grown: zarr.Array | None = None
    last_chunk: bytes | None = None
    if writer is not None and writer.fits(start, len(rows)):
        last_chunk = writer.write(start, rows)
    else:
        grown = _with_shape(arr, shape)
        # Appended rows are data, never "empty": writing their chunks unconditionally
        # spares zarr comparing each with the fill value.
        sync(_writing_every_chunk(grown).setitem((slice(start, start + len(rows)),), rows))
    _store_docs(arr, docs)
    return docs, grown, last_chunk


def _writing_every_chunk(arr: zarr.Array) -> Any:
    """``arr``'s async array with ``write_empty_chunks=True``.

    zarr's default deletes a chunk that equals the fill value everywhere; rows a
    saver saves are data, and their chunks are stored whatever they hold (so
    ``zsaver verify`` can tell a lost chunk from a saved one).
    """
    inner = arr.async_array
    return type(inner)(
        metadata=inner.metadata,
        store_path=inner.store_path,
        config=ArrayConfig(order=inner.config.order, write_empty_chunks=True),
    )


def _fill_scalar(arr: zarr.Array) -> Any:
    """What a missing chunk of ``arr`` reads as (zarr 2 arrays may say ``fill_value: null``)."""
    if arr.fill_value is not None:
        return arr.fill_value
    return np.zeros((), dtype=arr.dtype)[()]


def _read_blocks(arr: zarr.Array, ranges: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Rows ``a:b`` for each range, fetched concurrently in one event-loop round trip."""
    inner = arr.async_array

    async def fetch() -> list[Any]:
        return await asyncio.gather(*(inner.getitem((slice(a, b),)) for a, b in ranges))

    return [np.asarray(block) for block in sync(fetch())]


def _write_blocks(
    arr: zarr.Array, ranges: Sequence[tuple[int, int]], blocks: Sequence[np.ndarray]
) -> None:
    inner = _writing_every_chunk(arr)

    async def store_all() -> None:
        await asyncio.gather(
            *(
                inner.setitem((slice(a, b),), block)
                for (a, b), block in zip(ranges, blocks, strict=True)
            )
        )

    sync(store_all())


def _runs(ids: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs ``[first, last + 1)`` in sorted ``ids``."""
    if not ids:
        return
    start = prev = ids[0]
    for i in ids[1:]:
        if i != prev + 1:
            yield start, prev + 1
            start = i
        prev = i
    yield start, prev + 1


@dataclass
class _TailChunk:
    """The rows of a partial last chunk as written, and its file's bytes then.

    Appenders and updaters of that chunk all hold the dataset lock, and any of
    their writes changes the file: while its bytes are unchanged, ``rows`` is
    its content and the next append can write the chunk whole without reading it.
    """

    index: int
    rows: np.ndarray
    store: Store
    key: str
    stored: bytes

    def holds(self, index: int, n_rows: int) -> bool:
        return (
            index == self.index
            and n_rows == len(self.rows)
            and get_bytes(self.store, self.key) == self.stored
        )


class ZarrSaver(StagedSaver):
    """Persist rows into a zarr array, by append, overwrite or update.

    ``store`` is a path (a LocalStore), any zarr Store, or an open zarr Group;
    ``dataset_name`` may be nested (``"runs/a/result"``). ``options`` are the
    creation options of ``zarr.create_array`` (dtype, chunks, shards,
    compressors, filters, serializer, fill_value, attributes, zarr_format,
    dimension_names), ``shape`` (lets the update approach create the array) and
    ``allow_resize`` (updates past the end grow the array).

    Example:
        >>> import numpy as np, zarr
        >>> store = zarr.storage.MemoryStore()
        >>> with ZarrSaver(store, "runs/result", chunks=(4, 3)) as s:
        ...     for i in range(3):
        ...         s.save(np.full((2, 3), i))
        >>> zarr.open_array(store, path="runs/result").shape
        (6, 3)
    """

    def __init__(
        self,
        store: Any,
        dataset_name: str = "dataset",
        approach: str = "append",
        **options: Any,
    ) -> None:
        check_options(options, OPTIONS, "ZarrSaver")
        if not isinstance(dataset_name, str) or not dataset_name.strip("/"):
            raise ValueError(f"dataset_name must be a non-empty string; got {dataset_name!r}")
        self._store, prefix = _resolve_store(store)
        name = dataset_name.strip("/")
        self.path = f"{prefix}/{name}" if prefix else name
        self.name = self.path
        self._options = dict(options)
        super().__init__(
            approach,
            allow_resize=self._options.pop("allow_resize", False),
            create_shape=self._options.pop("shape", None),
        )
        self._open_handles()

    def _open_handles(self) -> None:
        self._locks = DatasetLocks(self._store, self.path)
        self._array: zarr.Array | None = None
        # The metadata documents as stored when ``_array`` was last known current:
        # while they are unchanged, nobody resized or replaced the array.
        self._array_docs: MetadataDocs | None = None
        # The rows of the partial last chunk as this saver wrote them.
        self._tail: _TailChunk | None = None
        self._chunk_writer: ChunkWriter | None = None
        # Stores with zarr's synchronous methods (LocalStore, MemoryStore, the shard
        # stores) answer a small read in microseconds; through the event loop it
        # costs a round trip per flush, so the last-chunk shortcut is kept to them.
        self._sync_reads = callable(getattr(self._store, "get_sync", None))

    def _stored_docs(self, arr: zarr.Array, keys: Sequence[str]) -> MetadataDocs:
        """The metadata documents as stored now (call with the dataset lock held)."""
        return _read_docs(arr, keys)

    # --- pickling: configuration only, handles reopen lazily -------------------

    def __getstate__(self) -> dict[str, Any]:
        return {
            "store": self._store,
            "path": self.path,
            "approach": self.approach,
            "options": self._options,
            "allow_resize": self.allow_resize,
            "create_shape": self._create_shape,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._store = state["store"]
        self.path = self.name = state["path"]
        self._options = state["options"]
        self.approach = state["approach"]
        self.allow_resize = state["allow_resize"]
        self._create_shape = state["create_shape"]
        self._init_session_state()
        self._open_handles()

    def clone(self, approach: str | None = None) -> ZarrSaver:
        """A fresh, unopened saver on the same dataset (picklable, for workers)."""
        options = dict(self._options, allow_resize=self.allow_resize)
        if self._create_shape is not None:
            options["shape"] = self._create_shape
        return ZarrSaver(self._store, self.path, approach or self.approach, **options)

    def clones_share_dataset(self) -> bool:
        """Whether this store reads, at once, what a pickled copy of it writes.

        Checked with a probe key that this store writes and reads, then a pickled
        copy overwrites (and both delete), so wrapper stores and third-party
        stores answer for themselves: a copy that keeps its own data (a
        MemoryStore) fails, and so does a store that caches values (an
        LRUStoreCache would go on reading what it held before the copy wrote).
        """
        probe = f"{self.path}/.zsaver/probe-{uuid.uuid4().hex}"
        copy = pickle.loads(pickle.dumps(self._store))
        try:
            set_bytes(self._store, probe, b"this")
            get_bytes(self._store, probe)
            set_bytes(copy, probe, b"copy")
            return get_bytes(self._store, probe) == b"copy"
        finally:
            delete_key(copy, probe)
            delete_key(self._store, probe)

    def __repr__(self) -> str:
        return f"ZarrSaver({self._store!r}, {self.path!r}, approach={self.approach!r})"

    # --- public views ---------------------------------------------------------------

    @property
    def store(self) -> Store:
        return self._store

    @property
    def array(self) -> zarr.Array:
        """The zarr array as stored now (flushed data only)."""
        try:
            try:
                return zarr.open_array(self._store, path=self.path, mode="r")
            except ValueError:  # stores that cannot make a read-only copy (zip)
                return zarr.open_array(self._store, path=self.path)
        except (FileNotFoundError, KeyError) as exc:
            raise DatasetNotFoundError(f"dataset {self.path!r} does not exist") from exc

    def consolidate(self) -> None:
        """Flush, let the store consolidate (shard stores), write consolidated metadata."""
        self.flush()
        store_consolidate = getattr(self._store, "consolidate", None)
        if callable(store_consolidate):
            store_consolidate()
        if self._disk_length() is None:
            return  # nothing saved yet: there may be no hierarchy to describe
        with warnings.catch_warnings():
            # zarr warns that consolidated metadata is not in the v3 spec yet, and
            # about our lock directory, which is no zarr node.
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(self._store)

    def flush(self) -> None:
        """Write everything staged, then flush the store; once this returns it survives a SIGKILL.

        Stores that buffer writes themselves (zsaver's shard stores with
        ``write_direct=True``) have a ``flush()``: it is called too, so data
        and records are durable when this returns, whatever the store.
        """
        if self._closed:
            return
        super().flush()
        self._flush_store()

    def _flush_store(self) -> None:
        store_flush = getattr(self._store, "flush", None)
        if callable(store_flush):
            store_flush()

    @property
    def supports_records(self) -> bool:
        return True

    def read_record(self, name: str) -> dict[str, Any] | None:
        return read_store_record(self._store, self.path, name)

    def write_record(self, name: str, doc: dict[str, Any] | None) -> None:
        """Write record ``name`` durably (the store is flushed if it buffers writes)."""
        write_store_record(self._store, self.path, name, doc)
        self._flush_store()

    # --- dataset handling ---------------------------------------------------------------

    def _open(self) -> zarr.Array | None:
        try:
            arr = zarr.open_array(self._store, path=self.path, mode="r+")
        except (FileNotFoundError, KeyError):
            return None
        except Exception:
            self._refuse_group()  # a clearer error than zarr's for the common mistake
            raise
        if arr.ndim == 0:
            raise ShapeMismatchError(f"dataset {self.path!r} is zero-dimensional; it has no rows")
        return arr

    def _adopt(self, arr: zarr.Array, docs: MetadataDocs | None = None) -> None:
        self._array = arr
        self._array_docs = docs
        self._tail = None
        self._encoder = _MetadataEncoder(arr)
        self._chunk_writer = ChunkWriter.for_array(arr)
        self._length = arr.shape[0]
        row_chunk = (arr.shards or arr.chunks)[0]
        self._spec = DatasetSpec(np.dtype(arr.dtype), tuple(arr.shape[1:]), int(row_chunk))

    def _open_spec(self) -> bool:
        arr = self._open()
        if arr is None:
            return False
        self._adopt(arr)
        return True

    def _disk_length(self) -> int | None:
        arr = self._open()
        return None if arr is None else arr.shape[0]

    def _creation_kwargs(self, shape: tuple[int, ...], data_dtype: np.dtype) -> dict[str, Any]:
        kwargs = dict(self._options)
        kwargs.setdefault("dtype", data_dtype)
        kwargs["zarr_format"] = self._hierarchy_format(kwargs.get("zarr_format"))
        chunks = check_chunks(kwargs.get("chunks"), self.path, auto=True)
        if chunks is None or chunks == "auto":
            try:
                itemsize_dtype = np.dtype(kwargs["dtype"])
            except TypeError:
                itemsize_dtype = data_dtype
            chunks = _default_chunks(shape[1:], itemsize_dtype, kwargs.get("shards"))
        if isinstance(chunks, int):
            chunks = (chunks, *shape[1:])
        kwargs["chunks"] = tuple(chunks)
        return kwargs

    def _hierarchy_format(self, asked: int | None) -> int | None:
        """The zarr format for a new dataset: that of the groups above it, if they agree.

        zarr writes the groups on a new array's path in the array's format, and
        zarr 3 group documents beside zarr 2 ones hide the zarr 2 attributes and
        members, so the dataset follows its hierarchy; asking for the other
        format raises DatasetSpecError.
        """
        found: set[int] = set()
        parts = self.path.split("/")
        for depth in range(len(parts)):
            prefix = "/".join(parts[:depth])
            doc = get_bytes(self._store, f"{prefix}/zarr.json" if prefix else "zarr.json")
            if doc is not None:
                found.add(3)
            elif get_bytes(self._store, f"{prefix}/.zgroup" if prefix else ".zgroup") is not None:
                found.add(2)
        if len(found) != 1:  # no groups yet, or already mixed: zarr's default or the option
            return asked
        (existing,) = found
        if asked is not None and asked != existing:
            raise DatasetSpecError(
                f"dataset {self.path!r}: zarr_format={asked} asked for, but the groups above "
                f"it are zarr {existing}; zarr would write zarr {asked} group documents over "
                f"them and hide their attributes and members (omit zarr_format, or use {existing})"
            )
        return existing

    def _dry_run(self, shape: tuple[int, ...], data_dtype: np.dtype, fill: bool) -> DatasetSpec:
        """The array the creation options make, created in memory: zarr validates every option."""
        kwargs = self._creation_kwargs(shape, data_dtype)
        if not fill:
            kwargs.pop("fill_value", None)
        try:
            memory = zarr.storage.MemoryStore()
            zarr.create_array(memory, shape=shape, **kwargs)
            # As reopened: zarr 3 stores a big-endian dtype as the native one.
            probe = zarr.open_array(memory, mode="r")
        except Exception as exc:  # any refusal of the dry run means unusable options
            raise DatasetSpecError(
                f"dataset {self.path!r}: zarr refuses the creation options "
                f"{kwargs} for shape {shape}: {exc}"
            ) from exc
        return DatasetSpec(
            np.dtype(probe.dtype), tuple(shape[1:]), int((probe.shards or probe.chunks)[0])
        )

    def _holds_node(self, path: str, kind: str) -> bool:
        """Whether zarr metadata of a ``kind`` ("array" or "group") node is stored at ``path``."""
        doc = get_bytes(self._store, f"{path}/zarr.json")
        try:
            if doc is not None and json.loads(doc).get("node_type") == kind:
                return True
        except (ValueError, AttributeError):
            pass
        return get_bytes(self._store, f"{path}/{'.zarray' if kind == 'array' else '.zgroup'}") is not None

    def _refuse_array_parent(self) -> None:
        """Raise ShapeMismatchError if an array lives on the dataset's path (zarr nests nothing in arrays)."""
        parts = self.path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if self._holds_node(parent, "array"):
                raise ShapeMismatchError(
                    f"dataset {self.path!r}: {parent!r} is an array, so nothing can be stored "
                    "below it; expected groups (or nothing) on the path"
                )

    def _refuse_group(self) -> None:
        """Raise ShapeMismatchError if a zarr group lives at the dataset's path."""
        if self._holds_node(self.path, "group"):
            raise ShapeMismatchError(
                f"dataset {self.path!r}: expected an array with a row axis; found a zarr group "
                "there, which is left as it is (choose another dataset_name)"
            )

    def _check_creatable(self, replace: bool) -> None:
        """Refuse a dataset that cannot be created (or replaced) at its path."""
        if replace:
            self._refuse_group()  # overwrite replaces an array, never a group and its arrays
            if not self._store.supports_deletes and self._open() is not None:
                raise DatasetSpecError(
                    f"dataset {self.path!r}: the overwrite approach replaces the existing "
                    f"array, but {type(self._store).__name__} cannot delete keys; expected "
                    "a store with deletes (or a new dataset_name); nothing was written"
                )
        self._refuse_array_parent()

    def _create(self, shape: tuple[int, ...], data_dtype: np.dtype, replace: bool) -> None:
        self._check_creatable(replace)  # before the lock, whose file would be written first
        with self._locks.dataset():
            if not replace:
                existing = self._open()
                if existing is not None:
                    self._adopt(existing)
                    return
            self._check_creatable(replace)  # again: another writer may have changed the path
            zarr.create_array(
                self._store,
                name=self.path,
                shape=shape,
                overwrite=replace,
                **self._creation_kwargs(shape, data_dtype),
            )
            # Reopened, so the handle has the dtype every later open sees (zarr 3
            # reports a big-endian dtype it was created with as the native one).
            arr = self._open()
            assert arr is not None
            self._adopt(arr)

    def _release(self) -> None:
        self._array = None
        self._array_docs = None
        self._tail = None
        self._chunk_writer = None
        self._spec = None

    def _fresh(self, exact_shape: bool = True) -> zarr.Array:
        """The array as stored now; call with the dataset lock held.

        Every saver changes the metadata only under the dataset lock, so when
        the stored documents are byte-identical to the ones our handle was
        last known current with, the handle is current: a small read instead
        of a reopen. After an append the handle may still carry the old
        length (building one costs more than the append's own metadata
        write); ``exact_shape=False`` accepts that, otherwise it is rebuilt.
        """
        if self._array is not None and self._array_docs is not None:
            if self._stored_docs(self._array, list(self._array_docs)) == self._array_docs:
                if exact_shape and self._array.shape[0] != self._length:
                    assert self._spec is not None
                    self._array = _with_shape(self._array, (self._length, *self._spec.row_shape))
                return self._array
        arr = self._open()
        if arr is None:
            raise DatasetNotFoundError(f"dataset {self.path!r} was deleted while being written")
        before = self._spec
        self._adopt(arr)
        self._array_docs = self._stored_docs(arr, list(self._encoder.docs(arr)))
        assert self._spec is not None
        if before is not None and (before.dtype, before.row_shape) != (
            self._spec.dtype,
            self._spec.row_shape,
        ):
            raise DatasetSpecError(
                f"dataset {self.path!r} was replaced by another writer: it now has dtype "
                f"{self._spec.dtype} and rows of shape {self._spec.row_shape}; staged data has "
                f"dtype {before.dtype} and rows of shape {before.row_shape}"
            )
        return arr

    @property
    def _batch_rows(self) -> int:
        assert self._spec is not None
        chunk_bytes = (
            self._spec.row_chunk
            * max(1, self._spec.dtype.itemsize)
            * max(1, int(np.prod(self._spec.row_shape)))
        )
        return self._spec.row_chunk * max(1, WRITE_BATCH_BYTES // chunk_bytes)

    # --- writing --------------------------------------------------------------------------

    def _write_rows(self, final: bool) -> None:
        assert self._rows is not None and self._spec is not None
        staged = len(self._rows)
        chunk = self._spec.row_chunk
        with self._locks.dataset():
            arr = self._fresh(exact_shape=False)
            start = self._length
            count = staged if final else staged - (start + staged) % chunk
            if count <= 0:
                return
            end = start + count
            # The head chunk may hold rows others update: read-modify-write it
            # under its chunk lock. Chunks past the old end belong to us alone.
            head = [start // chunk] if start % chunk else []
            with self._locks.chunks(head):
                first, rows = start, self._rows.view(count)
                tail = self._tail
                if head and tail is not None and tail.holds(start // chunk, start - head[0] * chunk):
                    # The head chunk is as we left it: write it whole from memory,
                    # which spares zarr reading and decoding it back.
                    first, rows = head[0] * chunk, np.concatenate([tail.rows, rows])
                self._tail = None
                self._array_docs, grown, last_chunk = _append_rows(
                    arr, first, rows, (end, *self._spec.row_shape), self._encoder, self._chunk_writer
                )
                self._tail = self._keep_tail(arr, first, rows, last_chunk)
            # Without a new handle, ``_fresh`` makes one when a caller needs the shape.
            self._array, self._length = (arr if grown is None else grown), end
        self._rows.consume(count)

    def _keep_tail(
        self, arr: zarr.Array, first: int, rows: np.ndarray, stored: bytes | None
    ) -> _TailChunk | None:
        """The partial last chunk just written, if we hold all its rows and can check its file.

        ``stored`` is that chunk's stored bytes when the saver wrote it itself;
        otherwise they are read back.
        """
        assert self._spec is not None
        chunk = self._spec.row_chunk
        end = first + len(rows)
        tail_start = end - end % chunk
        if not self._sync_reads or end % chunk == 0 or tail_start < first:
            return None
        grid = arr.shards or arr.chunks
        if tuple(grid[1:]) != tuple(arr.shape[1:]):  # several chunk files per row chunk
            return None
        key = _key(arr, arr.async_array.metadata.encode_chunk_key((end // chunk,) + (0,) * (arr.ndim - 1)))
        if stored is None:
            stored = get_bytes(self._store, key)
        if stored is None:
            return None
        rows_kept = np.array(rows[tail_start - first :], copy=True)
        return _TailChunk(end // chunk, rows_kept, self._store, key, stored)

    def _grow_to(self, n_rows: int) -> None:
        assert self._spec is not None
        self._tail = None
        with self._locks.dataset():
            arr = self._fresh()
            if n_rows <= self._length:
                return
            grown = _with_shape(arr, (n_rows, *self._spec.row_shape))
            self._fill(grown, self._length, n_rows, skip=set())
            self._array_docs = _save_shape(grown, self._encoder)
            self._array, self._length = grown, n_rows

    def _fill(self, arr: zarr.Array, start: int, end: int, skip: set[int]) -> None:
        """Set rows ``start:end`` to the fill value, except in chunks ``skip``.

        Chunks past the end may hold rows of a writer killed before it saved
        the new shape; a grown array must show fill values there, not those.
        """
        chunk = self._spec.row_chunk if self._spec else 1
        ids = [c for c in range(start // chunk, -(-end // chunk)) if c not in skip]
        for first, last in _runs(ids):
            a, b = max(start, first * chunk), min(end, last * chunk)
            with self._locks.chunks(range(first, last)):
                if a % chunk:
                    # The chunk holding the old end keeps saved rows, stored even if they
                    # equal the fill value; chunks past it may be left out (read as fill).
                    head_end = min(b, (a // chunk + 1) * chunk)
                    sync(_writing_every_chunk(arr).setitem((slice(a, head_end),), _fill_scalar(arr)))
                    a = head_end
                if a < b:
                    arr[a:b] = _fill_scalar(arr)

    def _write_updates(self) -> None:
        assert self._spec is not None
        self._tail = None
        chunk = self._spec.row_chunk
        groups = list(self._updates.by_chunk(chunk))
        needed = self._updates.max_position + 1
        lock = self._locks.dataset()
        lock.__enter__()
        held = True
        try:
            arr = self._fresh()
            length = self._length
            end = max(length, needed)
            # Only the chunk holding the end can be written by an appender too,
            # and only growth changes the shape: otherwise chunk locks suffice.
            if end == length and all(g.chunk < length // chunk for g in groups):
                lock.__exit__(None, None, None)
                held = False
            grown = _with_shape(arr, (end, *self._spec.row_shape)) if end > length else arr
            if end > length:
                self._fill(grown, length, end, skip={g.chunk for g in groups})
            for batch in _batches(groups, self._spec, budget=WRITE_BATCH_BYTES):
                self._merge_batch(grown, batch, length, end)
            if end > length:
                self._array_docs = _save_shape(grown, self._encoder)
            self._array, self._length = grown, end
        finally:
            if held:
                lock.__exit__(None, None, None)
        self._updates.clear()

    def _merge_batch(
        self, arr: zarr.Array, batch: list[ChunkUpdate], length: int, end: int
    ) -> None:
        assert self._spec is not None
        chunk = self._spec.row_chunk
        ranges = [(g.chunk * chunk, min((g.chunk + 1) * chunk, end)) for g in batch]
        with self._locks.chunks(g.chunk for g in batch):
            partial = [
                i
                for i, (g, (a, b)) in enumerate(zip(batch, ranges, strict=True))
                if g.positions.size < b - a
            ]
            read = _read_blocks(arr, [ranges[i] for i in partial]) if partial else []
            blocks: list[np.ndarray] = []
            fetched = dict(zip(partial, read, strict=True))
            for i, (g, (a, b)) in enumerate(zip(batch, ranges, strict=True)):
                block = fetched.get(i)
                if block is None:
                    block = np.empty((b - a, *self._spec.row_shape), dtype=self._spec.dtype)
                else:
                    block = np.array(block, copy=True)
                    if b > length:  # rows past the old end read as fill, never as stale data
                        block[max(0, length - a) :] = _fill_scalar(arr)
                block[g.positions - a] = g.rows
                blocks.append(block)
            _write_blocks(arr, ranges, blocks)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready config: the store's config, the dataset's full path, approach, options.

        A saver made on an open zarr Group is described by the group's store and
        the full path (``"group/path/name"``); the rebuilt saver writes the same
        array. A MemoryStore's contents are not config: the rebuilt saver gets an
        empty one. Raises :class:`~zsaver.errors.ConfigError` naming an option
        (or the store) that has no JSON form.
        """
        from zsaver.savers._configs import zarr_saver_config  # that module imports this one

        return zarr_saver_config(self)


def _default_chunks(row_shape: tuple[int, ...], dtype: np.dtype, shards: Any) -> tuple[int, ...]:
    """About 1 MiB of whole rows; with explicit ``shards``, a chunk shape that divides them.

    The rows per chunk are then the largest divisor of the shard's rows not above
    the 1 MiB default, and an axis whose row size does not divide the shard's takes
    the shard's size. ``shards="auto"`` (or none) keeps the 1 MiB default.
    """
    shard = shards.get("shape") if isinstance(shards, dict) else shards
    if not (
        isinstance(shard, (tuple, list))
        and len(shard) == len(row_shape) + 1
        and all(is_int(x) and x >= 1 for x in shard)
    ):
        return (default_row_chunk(row_shape, dtype), *row_shape)  # zarr judges odd shards
    trailing = tuple(
        int(r) if r and int(s) % r == 0 else int(s) for r, s in zip(row_shape, shard[1:], strict=True)
    )
    return (_largest_divisor(int(shard[0]), default_row_chunk(trailing, dtype)), *trailing)


def _largest_divisor(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is at most ``limit`` (at least 1)."""
    best = 1
    d = 1
    while d * d <= n:
        if n % d == 0:
            for q in (d, n // d):
                if best < q <= limit:
                    best = q
        d += 1
    return best


def _batches(
    groups: list[ChunkUpdate], spec: DatasetSpec, budget: int
) -> Iterator[list[ChunkUpdate]]:
    """Groups in batches of about ``budget`` bytes of chunk data (bounds memory)."""
    chunk_bytes = max(1, spec.row_chunk * spec.dtype.itemsize * int(np.prod(spec.row_shape)))
    per_batch = max(1, budget // chunk_bytes)
    for i in range(0, len(groups), per_batch):
        yield groups[i : i + per_batch]


__all__ = ["OPTIONS", "ZarrSaver"]
