"""zsaver: persist the results of long batch jobs into chunked arrays, crash-safely.

Example:
    >>> import numpy as np, zarr, zsaver
    >>> store = zarr.storage.MemoryStore()
    >>> with zsaver.ZarrSaver(store, "result") as s:
    ...     s.save(np.zeros((10, 3)))
    >>> zarr.open_array(store, path="result").shape
    (10, 3)
"""

from zsaver import errors, stores
from zsaver._config import from_config, register_config, to_config
from zsaver.errors import ResumeMismatchError, TaskError, ZsaverError
from zsaver.savers import APPROACHES, HDF5Saver, Saver, ZarrSaver
from zsaver.tasks import ItemFailure, Task, TaskManager, TaskReport

__version__ = "0.1.0"

__all__ = [
    "APPROACHES",
    "HDF5Saver",
    "ItemFailure",
    "ResumeMismatchError",
    "Saver",
    "Task",
    "TaskError",
    "TaskManager",
    "TaskReport",
    "ZarrSaver",
    "ZsaverError",
    "__version__",
    "errors",
    "from_config",
    "register_config",
    "stores",
    "to_config",
]
