"""zarr 3 stores: HDF5 and zip shard stores, routing, caching and conversion.

This layer knows zarr, h5py and zipfile, and nothing of savers or tasks.
"""

from zsaver.stores._convert import convert, open_store
from zsaver.stores._h5_store import H5ShardStore
from zsaver.stores._zip_store import ZipShardStore

__all__: list[str] = ["H5ShardStore", "ZipShardStore", "convert", "open_store"]
