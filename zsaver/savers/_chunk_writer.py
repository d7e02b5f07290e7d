"""Encode and store a few whole row chunks without zarr's event loop.

A checkpoint of an append writes one or two chunks (the partial last chunk
again, plus maybe a new one). Through ``zarr.Array.__setitem__`` that costs
several thread hand-offs between the caller, zarr's event loop and its thread
pool, which on a small machine take longer than encoding and writing the chunk
(measured: 3.4 ms against 1.0 ms for a 512 KB chunk, zarr 3.1). For arrays whose
codec chain can run synchronously (``bytes`` then any bytes-to-bytes codecs
with ``_encode_sync``: zstd, gzip, blosc, crc32c) on stores with ``set_sync``
(LocalStore, MemoryStore, zsaver's shard stores), this module runs the array's
own codecs in the calling thread. The stored bytes are the ones zarr writes for
the same chunk (tested); other arrays keep going through zarr.

Example:
    >>> import numpy as np, zarr
    >>> store = zarr.storage.MemoryStore()
    >>> arr = zarr.create_array(store, shape=(6, 2), chunks=(4, 2), dtype="i4")
    >>> writer = ChunkWriter.for_array(arr)
    >>> _ = writer.write(0, np.arange(12, dtype="i4").reshape(6, 2))
    >>> arr[:].tolist()[-1]
    [10, 11]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr
from zarr.abc.codec import BytesBytesCodec
from zarr.codecs import BytesCodec
from zarr.core.array_spec import ArrayConfig, ArraySpec
from zarr.core.buffer import Buffer, default_buffer_prototype

#: Writes of more chunks than this go through zarr, which encodes them concurrently.
MAX_CHUNKS = 2


class ChunkWriter:
    """Writes whole row chunks of one array through its codecs, synchronously."""

    def __init__(self, arr: zarr.Array) -> None:
        inner = arr.async_array
        metadata: Any = inner.metadata
        self._store: Any = inner.store_path.store
        self._path = inner.store_path.path
        self._metadata = metadata
        self._codecs = tuple(metadata.codecs)
        self.chunk_shape = tuple(int(x) for x in arr.chunks)
        self._native_dtype = metadata.dtype.to_native_dtype()
        self._fill_value = metadata.fill_value
        self._spec = ArraySpec(
            shape=self.chunk_shape,
            dtype=metadata.dtype,
            fill_value=metadata.fill_value,
            config=ArrayConfig(order=inner.config.order, write_empty_chunks=True),
            prototype=default_buffer_prototype(),
        )

    @classmethod
    def for_array(cls, arr: zarr.Array) -> ChunkWriter | None:
        """A writer for ``arr``, or None when zarr must write its chunks itself.

        Needs a zarr 3 array with one chunk across the non-row axes, no
        sharding, a ``bytes`` codec followed only by bytes-to-bytes codecs that
        encode synchronously, and a store with ``set_sync``.
        """
        inner = arr.async_array
        metadata: Any = inner.metadata
        if metadata.zarr_format != 3 or arr.shards is not None:
            return None
        if not callable(getattr(inner.store_path.store, "set_sync", None)):
            return None
        if tuple(arr.chunks[1:]) != tuple(arr.shape[1:]):
            return None
        codecs = tuple(metadata.codecs)
        if not codecs or type(codecs[0]) is not BytesCodec:
            return None
        if not all(
            isinstance(c, BytesBytesCodec) and callable(getattr(c, "_encode_sync", None))
            for c in codecs[1:]
        ):
            return None
        return cls(arr)

    def fits(self, first_row: int, n_rows: int) -> bool:
        """Whether rows ``first_row:first_row + n_rows`` are whole chunks this writer takes."""
        row_chunk = self.chunk_shape[0]
        return first_row % row_chunk == 0 and 0 < n_rows <= MAX_CHUNKS * row_chunk

    def encode(self, rows: np.ndarray) -> Buffer:
        """The stored form of one chunk holding ``rows`` (padded with the fill value)."""
        if rows.shape == self.chunk_shape:
            block = np.ascontiguousarray(rows, dtype=self._native_dtype)
        else:
            block = np.full(self.chunk_shape, self._fill_value, dtype=self._native_dtype)
            block[: len(rows)] = rows
        buf: Any = self._spec.prototype.nd_buffer.from_numpy_array(block)
        for codec in self._codecs:
            buf = codec._encode_sync(buf, self._spec)
        assert isinstance(buf, Buffer)
        return buf

    def key(self, chunk_index: int) -> str:
        name = self._metadata.encode_chunk_key((chunk_index,) + (0,) * (len(self.chunk_shape) - 1))
        return f"{self._path}/{name}" if self._path else name

    def write(self, first_row: int, rows: np.ndarray) -> bytes:
        """Store ``rows`` from ``first_row`` (a chunk boundary); returns the last chunk's bytes."""
        row_chunk = self.chunk_shape[0]
        first_chunk = first_row // row_chunk
        buf: Buffer | None = None
        for offset in range(0, len(rows), row_chunk):
            buf = self.encode(rows[offset : offset + row_chunk])
            self._store.set_sync(self.key(first_chunk + offset // row_chunk), buf)
        assert buf is not None, "no rows to write"
        return buf.to_bytes()


__all__ = ["MAX_CHUNKS", "ChunkWriter"]
