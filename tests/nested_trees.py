"""Arrays written the way zarr 2's H5_Nested_Store wrote them, with plain h5py (test fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np


def write_nested_tree(root: Path, name: str, data: np.ndarray, chunks: tuple[int, ...],
                       depth: int) -> None:
    """Write an array the way H5_Nested_Store did: raw chunk bytes as scalar datasets."""
    adir = root / name
    adir.mkdir(parents=True)
    (root / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (adir / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": list(data.shape), "chunks": list(chunks),
        "dtype": data.dtype.str, "compressor": None, "fill_value": 0, "order": "C",
        "filters": None, "dimension_separator": "/",
    }))
    grid = [-(-s // c) for s, c in zip(data.shape, chunks, strict=True)]
    for idx in np.ndindex(*grid):
        block = np.zeros(chunks, dtype=data.dtype)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, data.shape,
                                                                       strict=True))
        part = data[sl]
        block[tuple(slice(0, n) for n in part.shape)] = part
        split = len(idx) - depth
        folder = adir.joinpath(*map(str, idx[:split]))
        folder.mkdir(parents=True, exist_ok=True)
        with h5py.File(folder / f"{idx[split]}.h5", "a") as f:
            f.create_dataset(".".join(map(str, idx[split + 1 :])), data=np.void(block.tobytes()))
