"""zarr 3 stores: HDF5 and zip shard stores, routing, caching and conversion.

This layer knows zarr, h5py and zipfile, and nothing of savers or tasks.
"""

from zsaver.stores._configs import store_to_config
from zsaver.stores._lru_cache import LRUStoreCache
from zsaver.stores._open import open_store
from zsaver.stores._shard_factories import StoreTable, StoreTemplate
from zsaver.stores._sharded_store import ShardedStore, chunk_key_to_indices

__all__: list[str] = [
    "LRUStoreCache",
    "ShardedStore",
    "StoreTable",
    "StoreTemplate",
    "chunk_key_to_indices",
    "open_store",
    "store_to_config",
]
