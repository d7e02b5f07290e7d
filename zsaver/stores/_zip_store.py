"""ZipShardStore: a zarr 3 store keeping chunks in zip shard files."""

from __future__ import annotations

from zsaver.stores._sharded_base import ShardedStoreBase
from zsaver.stores._zip import ZipContainer


class ZipShardStore(ShardedStoreBase):
    """Chunks grouped into ``.zip`` shards; each chunk a stored (uncompressed) member.

    Example:
        >>> import tempfile, zarr, numpy as np
        >>> store = ZipShardStore(tempfile.mkdtemp(), chunks_per_shard=2)
        >>> a = zarr.create_array(store, name="x", shape=(4,), chunks=(1,), dtype="i4")
        >>> a[:] = np.arange(4)
        >>> store.consolidate()
        2
        >>> zarr.open_array(store, path="x")[:].tolist()
        [0, 1, 2, 3]
    """

    store_type = "zip"

    def _make_container(self) -> ZipContainer:
        return ZipContainer()
