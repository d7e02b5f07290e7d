"""zarr 3 stores: HDF5 and zip shard stores, routing, caching and conversion.

This layer knows zarr, h5py and zipfile, and nothing of savers or tasks.
"""

from zsaver.stores._open import open_store

__all__ = ["open_store"]
