"""Make either saver on a temporary location and read its dataset back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zarr

from zsaver import HDF5Saver, Saver, ZarrSaver

DATASET = "runs/result"


class Backend:
    """Makes savers of one kind on one temporary location and reads the result back."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.location = root / ("store.zarr" if kind == "zarr" else "data.h5")

    def saver(self, approach: str = "append", name: str = DATASET, **options: Any) -> Saver:
        if self.kind == "zarr":
            return ZarrSaver(self.location, name, approach, **options)
        return HDF5Saver(self.location, name, approach, **options)

    def read(self, name: str = DATASET) -> np.ndarray | None:
        if self.kind == "zarr":
            try:
                return zarr.open_array(self.location, path=name, mode="r")[...]
            except (FileNotFoundError, KeyError):
                return None
        if not self.location.exists():
            return None
        with h5py.File(self.location, "r") as f:
            return f[name][...] if name in f else None
