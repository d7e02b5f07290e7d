"""H5ShardStore: a zarr 3 store keeping chunks in HDF5 shard files."""

from __future__ import annotations

import os
from typing import Any

from zsaver.errors import StoreConfigError
from zsaver.stores._h5 import H5Container
from zsaver.stores._layout import ShardLayout
from zsaver.stores._shard_cache import ShardHandleCache
from zsaver.stores._sharded_base import ShardedStoreBase


class H5ShardStore(ShardedStoreBase):
    """Chunks grouped into ``.h5`` shards; each chunk a dataset of its raw bytes.

    ``layout="nested", consolidate_depth=d`` reads and writes the zarr 2
    H5_Nested_Store layout instead (see ``docs/layout.md``).

    Example:
        >>> import tempfile, zarr, numpy as np
        >>> store = H5ShardStore(tempfile.mkdtemp())
        >>> a = zarr.create_array(store, name="x", shape=(4, 2), chunks=(1, 2), dtype="i4")
        >>> a[:] = np.arange(8).reshape(4, 2)
        >>> store.consolidate()
        1
        >>> int(zarr.open_array(store, path="x")[3, 1])
        7
    """

    store_type = "h5"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        chunks_per_shard: int | tuple[int | None, ...] | None = None,
        read_only: bool = False,
        write_direct: bool = False,
        layout: str = "sharded",
        consolidate_depth: int | None = None,
        max_open_shards: int = 128,
        max_buffer_bytes: int = 256 * 2**20,
    ) -> None:
        if layout not in ("sharded", "nested"):
            raise StoreConfigError(f"layout must be 'sharded' or 'nested', got {layout!r}")
        if layout == "nested":
            if not isinstance(consolidate_depth, int) or consolidate_depth < 2:
                raise StoreConfigError(
                    f"layout='nested' needs consolidate_depth >= 2, got {consolidate_depth!r}"
                )
            if chunks_per_shard is not None:
                raise StoreConfigError("chunks_per_shard does not apply to layout='nested'")
        elif consolidate_depth is not None:
            raise StoreConfigError("consolidate_depth applies only to layout='nested'")
        self.layout = layout
        self.consolidate_depth = consolidate_depth
        super().__init__(
            root,
            chunks_per_shard=chunks_per_shard,
            read_only=read_only,
            write_direct=write_direct,
            max_open_shards=max_open_shards,
            max_buffer_bytes=max_buffer_bytes,
        )

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "layout": self.layout,
                "consolidate_depth": self.consolidate_depth}

    def _make_container(self) -> H5Container:
        return H5Container(scalar_members=self.layout == "nested")

    def _build_layout(self, doc: dict[str, Any]) -> ShardLayout:
        if doc.get("layout") == "nested" and self.layout != "nested":
            # Opened without layout=: the marker's nested layout holds, member format included.
            self.layout, self.consolidate_depth = "nested", doc.get("consolidate_depth")
            self._container = self._make_container()
            self._cache = ShardHandleCache(self._container, self.max_open_shards)
        return super()._build_layout(doc)

    def _wanted_layout(self) -> dict[str, Any] | None:
        if self.layout == "nested":
            return {"layout": "nested", "consolidate_depth": self.consolidate_depth}
        wanted = super()._wanted_layout()
        return None if wanted is None else wanted
