"""zsaver: persist the results of long batch jobs into chunked arrays, crash-safely.

Example:
    >>> import numpy as np, zsaver
    >>> with zsaver.ZarrSaver(zarr.storage.MemoryStore(), "result") as s:  # doctest: +SKIP
    ...     s.save(np.zeros((10, 3)))
"""

from zsaver import errors, stores
from zsaver._config import from_config, register_config, to_config
from zsaver.errors import ZsaverError
from zsaver.savers import APPROACHES, Saver

__version__ = "0.1.0"

__all__ = [
    "APPROACHES",
    "Saver",
    "ZsaverError",
    "__version__",
    "errors",
    "from_config",
    "register_config",
    "stores",
    "to_config",
]
