"""Placeholder demo, replaced once the savers land."""

import sys

import numpy as np
import zarr

import zsaver

out = sys.argv[1] if len(sys.argv) > 1 else "zsaver-demo.zarr"
zarr.create_array(out, data=np.arange(10.0), overwrite=True)
print(f"zsaver {zsaver.__version__}: wrote {out}")
