"""Savers: persist arrays of results along axis 0 into zarr or HDF5 datasets."""

from zsaver.savers import _configs  # noqa: F401  (registers the saver config types)
from zsaver.savers._hdf5 import HDF5Saver
from zsaver.savers._zarr import ZarrSaver
from zsaver.savers.base import APPROACHES, Saver

__all__ = ["APPROACHES", "HDF5Saver", "Saver", "ZarrSaver"]
