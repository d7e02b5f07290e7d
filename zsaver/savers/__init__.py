"""Savers: persist arrays of results along axis 0 into zarr or HDF5 datasets."""

from zsaver.savers.base import APPROACHES, Saver

__all__ = ["APPROACHES", "Saver"]
