"""zarr 3 stores: HDF5 and zip shard stores, routing, caching and conversion.

This layer knows zarr, h5py and zipfile, and nothing of savers or tasks.
"""

from zsaver.stores._configs import store_to_config
from zsaver.stores._convert import convert
from zsaver.stores._h5_store import H5ShardStore
from zsaver.stores._lru_cache import LRUStoreCache
from zsaver.stores._open import open_store
from zsaver.stores._shard_factories import StoreTable, StoreTemplate
from zsaver.stores._sharded_store import ShardedStore, chunk_key_to_indices
from zsaver.stores._zip_store import ZipShardStore

__all__: list[str] = [
    "H5ShardStore",
    "LRUStoreCache",
    "ShardedStore",
    "StoreTable",
    "StoreTemplate",
    "ZipShardStore",
    "chunk_key_to_indices",
    "convert",
    "open_store",
    "store_to_config",
]
